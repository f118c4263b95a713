"""int8 on the CPU: the decoder's linear layers with int8 weights and int8 activations.

Weights are quantised once per output channel (symmetric int8) and activations per
token at run time, through torchao's maintained ``quantize_`` API
(``Int8DynamicActivationInt8WeightConfig``). Embeddings, norms, attention scores and
the pooled vectors stay in float32. On CPUs with AVX-512 VNNI (no AMX) torchao runs the
products as u8×s8 ``torch._int_mm``; elsewhere it uses a reduced 7-bit range, which is
torchao's own guard against overflow, so the vectors stay right but the speed-up shrinks.

Only :func:`promptembed.loading.load_model` calls this module: device and precision are
decided there, once.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from promptembed._util.optional import quiet_imports
from promptembed.engine.forward import decoder_layers

logger = logging.getLogger(__name__)

INT8 = "int8"


def _torchao() -> tuple[Any, Any]:
    """Import torchao quietly, or say which extra installs it.

    torchao logs a warning for each of its CUDA-only kernel libraries that a CPU build of
    torch cannot load; those are irrelevant here, so its import is kept quiet.
    """
    try:
        with quiet_imports():
            quant = importlib.import_module("torchao.quantization")
            utils = importlib.import_module("torchao.utils")
    except ImportError as error:
        raise ImportError("dtype='int8' needs torchao: pip install 'promptembed[int8]'") from error
    return quant, utils


def quantize_int8(model: Any) -> int:
    """Quantise, in place, every ``nn.Linear`` inside the decoder blocks of ``model``.

    Args:
        model: A transformers base model in float32 on the CPU, gradients off.

    Returns:
        The number of linear layers quantised.

    Raises:
        ImportError: torchao is not installed (names the extra).
        ValueError: The decoder blocks hold no ``nn.Linear`` (GPT-2's ``Conv1D``, for
            one), so int8 would change nothing: refused rather than silently fp32.

    Example:
        >>> from transformers import LlamaConfig, LlamaModel
        >>> cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...                   num_hidden_layers=2, num_attention_heads=4)
        >>> quantize_int8(LlamaModel(cfg).eval().requires_grad_(False))  # doctest: +SKIP
        14

    """
    from torch import nn

    blocks = decoder_layers(model)
    targets = {id(m) for m in blocks.modules() if isinstance(m, nn.Linear)}
    if not targets:
        raise ValueError(
            f"dtype='int8' quantises the nn.Linear layers of the decoder blocks, and "
            f"{type(model).__name__} has none (its blocks use "
            f"{sorted({type(m).__name__ for m in blocks[0].modules() if _has_weight(m)})}); "
            "use dtype='float32' for this model"
        )
    quant, utils = _torchao()
    device = next(model.parameters()).device
    reduce_range = bool(utils.should_reduce_range(device))
    if reduce_range:
        logger.warning(
            "this CPU has no AVX-512 VNNI: int8 runs with torchao's reduced 7-bit range, "
            "so expect a smaller speed-up and a larger difference from float32"
        )
    # set_inductor_config=False: nothing here is compiled, and it would change torch's
    # global inductor settings for the whole process.
    config = quant.Int8DynamicActivationInt8WeightConfig(
        reduce_range=reduce_range, set_inductor_config=False
    )
    quant.quantize_(model, config, filter_fn=lambda module, _fqn: id(module) in targets)
    return len(targets)


def _has_weight(module: Any) -> bool:
    return getattr(module, "weight", None) is not None
