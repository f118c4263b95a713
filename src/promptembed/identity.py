"""THE definition of what shapes a vector: one place, used by every consumer.

Two embedders whose identities differ must never put vectors into one collection,
share an embedding-cache entry, or share a calibration. An identity is:

* the :class:`~promptembed.config.EmbedderConfig` fields in :data:`VECTOR_FIELDS`
  (model, templates, layer, pooling, normalisation, max_length);
* the calibration, by the content hash of its file (never its path, so a collection
  and its config can move to another directory or machine);
* the weights, by a fingerprint of the loaded files (:func:`weights_fingerprint`);
  once both sides know it, it stands for the model: a local model folder may move;
* the precision: the resolved dtype (``float32``, ``bfloat16``, ``float16``, ``int8``).

Every other field is in :data:`RUNTIME_FIELDS`: it changes how fast or where vectors
are made, never which. ``tests/test_identity.py`` enumerates every config field and
asserts its side, so a field added later cannot be forgotten.

Precision is recorded exactly, and the embedding cache keys on it exactly. Collections
compare it by *class*: the float dtypes are one class (the same weights, rounded: an
index built in bf16 on a GPU is queried in fp32 on a CPU), a quantised model is another.

Consumers: the collection record and its check (:mod:`promptembed.guard`), the
calibration fit check (:mod:`promptembed.calibration`), the embedding-cache key
(:mod:`promptembed.embedder`), the config Chroma persists and its update check
(:mod:`promptembed.chroma`, :meth:`EmbedderConfig.stored`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from promptembed.config import EmbedderConfig, hash_in_name

# Config fields that change the vectors (compared exactly).
VECTOR_FIELDS = (
    "model",
    "gguf_file",
    "template",
    "query_template",
    "layer",
    "pooling",
    "normalize_text",
    "normalize_embeddings",
    "max_length",
    "revision",
    "model_kwargs",
    "demonstrations",
    "token_prepending",
    "contrastive",
)
# Where the weights were loaded from: moot once their content fingerprints agree.
_SOURCE_FIELDS = frozenset({"model", "gguf_file"})
# Fields that change the vectors but are recorded in their own form.
CALIBRATION_FIELD = "calibration"  # by content hash
PRECISION_FIELD = "dtype"  # by the resolved dtype
# Fields that change how (speed, place, logging), never which vectors.
RUNTIME_FIELDS = (
    "device",
    "batch_size",
    "max_batch_tokens",
    "replicas",
    "prefix_cache",
    "trust_remote_code",
    "cache_dir",
    "show_progress",
    "embedding_cache",
    "token_env",
    "device_map",
    # Client mode: where the vectors are made; the server's identity is theirs.
    "server",
    "server_api_key_env",
)
# What a calibration is fitted under: everything that shapes the raw vector it maps
# (the final L2 normalisation comes after it).
FIT_FIELDS = tuple(f for f in VECTOR_FIELDS if f != "normalize_embeddings")
# Never persisted with a collection: machine-local, or unsafe to restore.
NEVER_STORED = frozenset(
    {
        "trust_remote_code",
        "show_progress",
        "embedding_cache",
        "replicas",
        "token_env",
        "server",
        "server_api_key_env",
        "cache_dir",
    }
)

_FLOAT = frozenset({"float32", "bfloat16", "float16", "float64"})
# Config keys that vary with the machine or library, not with the weights.
_CONFIG_NOISE = frozenset(
    {"transformers_version", "dtype", "torch_dtype", "_name_or_path", "_commit_hash"}
)


def plain(value: Any) -> Any:
    """A value as it round-trips through JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def calibration_hash(path: str | Path | None) -> str | None:
    """The 12-hex content hash of a calibration file (from a hashed name, else the bytes).

    Example:
        >>> calibration_hash("any/dir/calibration-2769b3163945.npz")
        '2769b3163945'

    """
    if not path:
        return None
    named = hash_in_name(path)
    if named:  # Calibration.load refuses a file whose bytes do not match its name
        return named
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _unset(value: Any) -> Any:
    """``None`` for an unset optional field (absent from records written before it existed)."""
    return None if value == {} else value


def precision_class(precision: str | None) -> str | None:
    """``float`` for the float dtypes (same weights, rounded), else the precision itself."""
    return "float" if precision in _FLOAT else precision


@dataclass(frozen=True)
class VectorIdentity:
    """What shapes a vector; ``None`` for weights or precision means "not known here".

    Example:
        >>> from promptembed.config import EmbedderConfig
        >>> a = of_config(EmbedderConfig(template="ke"))
        >>> b = of_config(EmbedderConfig(template="eol"))
        >>> a.differences(b)
        ['template']

    """

    fields: dict[str, Any]
    calibration: str | None = None
    weights: str | None = None
    precision: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON form stored with a collection."""
        return {
            "fields": self.fields,
            "calibration": self.calibration,
            "weights": self.weights,
            "precision": self.precision,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> VectorIdentity:
        """Read a stored record (format 2), or a format-1 flat identity (no weights)."""
        if "fields" in data:
            return cls(data["fields"], data.get("calibration"), data.get("weights"),
                       data.get("precision"))  # fmt: skip
        fields = {k: data.get(k) for k in VECTOR_FIELDS}
        calibration = data.get(CALIBRATION_FIELD)
        named = hash_in_name(calibration) if calibration else None
        return cls(plain(fields), named or calibration)

    def differences(self, other: VectorIdentity) -> list[str]:
        """Names of what differs; unknown weights or precision are not compared.

        Where both weights fingerprints are known and equal, the model is the same by
        content, so where it was loaded from (``model``, ``gguf_file``) is not compared:
        a local model directory may move, or sit elsewhere on another machine.
        """
        same_weights = self.weights is not None and self.weights == other.weights
        diff = sorted(k for k in set(self.fields) | set(other.fields)
                      if _unset(self.fields.get(k)) != _unset(other.fields.get(k))
                      and not (same_weights and k in _SOURCE_FIELDS))  # fmt: skip
        if self.calibration != other.calibration:
            diff.append("calibration")
        if None not in (self.weights, other.weights) and self.weights != other.weights:
            diff.append("weights")
        if None not in (self.precision, other.precision) and precision_class(
            self.precision
        ) != precision_class(other.precision):
            diff.append("precision")
        return diff

    def describe(self, dimension: Any = None) -> str:
        """One line for error messages."""
        shown = [f"{k}={v!r}" for k, v in self.fields.items()]
        shown += [f"calibration={self.calibration!r}", f"weights={self.weights!r}"]
        shown.append(f"precision={self.precision!r}")
        if dimension is not None:
            shown.append(f"dimension={dimension!r}")
        return "{" + ", ".join(shown) + "}"

    def key(self, **extra: Any) -> str:
        """A hex digest of the exact record (and ``extra``): the embedding-cache key."""
        blob = json.dumps({**self.record(), **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def of_config(config: EmbedderConfig) -> VectorIdentity:
    """The identity a config asks for, before loading (weights unknown).

    The precision is known only when ``dtype`` is not ``auto``.
    """
    fields = {name: plain(getattr(config, name)) for name in VECTOR_FIELDS}
    dtype = getattr(config, PRECISION_FIELD)
    return VectorIdentity(
        fields, calibration_hash(config.calibration), None, None if dtype == "auto" else dtype
    )


class LoadedEmbedder(Protocol):
    """What :func:`of_embedder` reads of a loaded embedder (``PromptEmbedder`` has it)."""

    @property
    def config(self) -> EmbedderConfig: ...  # noqa: D102

    @property
    def fingerprint(self) -> str: ...  # noqa: D102

    @property
    def torch_dtype(self) -> Any: ...  # noqa: D102


def of_embedder(embedder: LoadedEmbedder) -> VectorIdentity:
    """The identity of a loaded embedder: its config, weights and resolved precision."""
    config = embedder.config
    weights = embedder.fingerprint
    base = of_config(config)
    return VectorIdentity(
        base.fields,
        base.calibration,
        None if weights == "in-memory" else weights,
        resolved_precision(config.dtype, embedder.torch_dtype),
    )


def likelihood_record(embedder: LoadedEmbedder, max_passage_tokens: int) -> dict[str, Any]:
    """What shapes a reranking score: the language model (weights, precision, kwargs).

    Not the templates, layer or pooling that shape a vector: every config of one model
    gives a (prompt, query, passage) the same score, so they share cached scores.
    """
    loaded = of_embedder(embedder)
    return {
        "likelihood": "mean log-probability",
        "weights": loaded.weights,
        "precision": loaded.precision,
        "model_kwargs": loaded.fields["model_kwargs"],
        "max_passage_tokens": max_passage_tokens,
    }


def resolved_precision(dtype: str, torch_dtype: Any) -> str:
    """The precision a model runs at: a quantised dtype by name, else the torch dtype."""
    if dtype not in ("auto", *_FLOAT):
        return dtype  # e.g. int8: the weights are quantised whatever the compute dtype
    return str(torch_dtype).removeprefix("torch.")


def fit_record(config: EmbedderConfig) -> dict[str, Any]:
    """The fields recorded in (and checked against) a calibration file."""
    return {name: plain(getattr(config, name)) for name in FIT_FIELDS}


def stored_fields(config: EmbedderConfig) -> dict[str, Any]:
    """The config fields persisted with a collection: portable and safe to restore.

    The calibration is kept as its file name (which carries its content hash), never
    a path, and ``trust_remote_code`` is never stored.
    """
    out = config.model_dump(exclude=set(NEVER_STORED))
    if out.get(CALIBRATION_FIELD):
        out[CALIBRATION_FIELD] = Path(out[CALIBRATION_FIELD]).name
    return out


# -- weights --------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()
_BLOB = re.compile(r"^[0-9a-f]{64}$")


def file_digest(path: Path) -> str:
    """sha256 of a weights file; free for hub-cache files (their blob name is the hash).

    Memoised per process by (path, size, mtime): a file rewritten in place is new.
    """
    target = path.resolve()
    if _BLOB.match(target.name) and target.parent.name == "blobs":
        return target.name
    stat = target.stat()
    key = (str(target), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    digest = hashlib.sha256()
    with target.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def weights_fingerprint(source: str, files: list[Path], model_config: Any) -> str:
    """A portable fingerprint of loaded weights: their content and their config.

    Args:
        source: A stable name of the weights where their content is pinned by it (an
            alias with its package version, or a hub id with its revision); ``""`` to
            hash the files.
        files: The weight files (hashed when ``source`` is empty).
        model_config: The transformers config (machine-dependent keys are dropped).

    Returns:
        16 hex characters; the same weights give the same value on any machine.
    """
    content = source or sorted((f.name, file_digest(f)) for f in files)
    config = {k: v for k, v in model_config.to_diff_dict().items() if k not in _CONFIG_NOISE}
    blob = json.dumps({"weights": content, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
