"""Training-free calibration: mean-centering or whitening fitted on unlabeled text.

Raw LLM hidden states are anisotropic: they share a large common direction, which
crowds every cosine towards 1. Subtracting the mean of a sample of the user's own
text (and optionally whitening, and keeping the top-k directions) spreads them out.
The fitted transform is a small ``.npz`` file whose name carries its content hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from promptembed._util.vectors import unit
from promptembed.identity import FIT_FIELDS, fit_record

# Fit fields that calibration files written by earlier versions do not record.
_LATER_FIELDS = frozenset(
    {
        "max_length",
        "query_template",
        "revision",
        "model_kwargs",
        "demonstrations",
        "token_prepending",
        "contrastive",
    }
)

if TYPE_CHECKING:
    from promptembed.config import EmbedderConfig

Method = Literal["center", "whiten"]


@dataclass
class Calibration:
    """A fitted affine post-processing ``(unit(x) - mean) @ projection``.

    Args:
        method: ``center`` (subtract the mean; with ``dims``, keep the top principal
            directions) or ``whiten`` (also scale each direction to unit variance).
        mean: ``(hidden,)`` sample mean of the unit vectors.
        projection: ``(hidden, k)`` matrix, or ``None`` for plain centering.
        fitted_on: The embedder fields it was fitted under, and sample facts.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> cal = Calibration.fit(rng.normal(size=(200, 8)) + 5.0, method="whiten", dims=4)
        >>> cal.apply(rng.normal(size=(3, 8))).shape
        (3, 4)
    """

    method: Method
    mean: np.ndarray
    projection: np.ndarray | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)
    """The file it was read from (named in errors), or None when fitted in memory."""

    @property
    def dimension(self) -> int:
        """Output length."""
        return int(self.projection.shape[1] if self.projection is not None else len(self.mean))

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        *,
        method: Method = "center",
        dims: int | None = None,
        fitted_on: dict[str, Any] | None = None,
    ) -> Calibration:
        """Fit on sample vectors (rows), which are first scaled to unit length.

        Raises:
            ValueError: On an unknown method, too few samples, or ``dims`` out of range.
        """
        if method not in ("center", "whiten"):
            raise ValueError(f"method must be 'center' or 'whiten', got {method!r}")
        x = unit(np.asarray(vectors, dtype=np.float64))
        if not np.isfinite(x).all():
            raise ValueError("calibration sample vectors hold NaN or inf; nothing was fitted")
        n, d = x.shape
        if n < 2:
            raise ValueError(f"calibration needs at least 2 sample texts, got {n}")
        rank = min(n - 1, d)
        if dims is not None and not 1 <= dims <= rank:
            raise ValueError(f"dims must be in 1..{rank} for {n} samples of width {d}, got {dims}")
        mean = x.mean(axis=0)
        projection = None
        if method == "whiten" or dims is not None:
            _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
            k = dims or rank
            projection = vt[:k].T
            if method == "whiten":
                std = s[:k] / np.sqrt(n - 1)
                projection = projection / np.maximum(std, 1e-6 * std[0])
        meta = {**(fitted_on or {}), "samples": n, "method": method, "dims": dims}
        return cls(
            method,
            mean.astype(np.float32),
            None if projection is None else projection.astype(np.float32),
            meta,
        )

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Transform rows; float32 out."""
        x = unit(np.asarray(vectors, dtype=np.float32)) - self.mean
        return (x @ self.projection if self.projection is not None else x).astype(np.float32)

    # -- files ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``calibration-<sha256[:12]>.npz`` into ``directory``; return its path."""
        buffer = io.BytesIO()
        arrays = {"mean": self.mean, "meta": np.array(json.dumps(self.fitted_on, default=str))}
        if self.projection is not None:
            arrays["projection"] = self.projection
        np.savez(buffer, **arrays)
        blob = buffer.getvalue()
        digest = hashlib.sha256(blob).hexdigest()[:12]
        target = Path(directory) / f"calibration-{digest}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users' servers must read it
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file, checking that its content matches the hash in its name.

        Raises:
            FileNotFoundError: If the file is missing.
            ValueError: If the content does not match the name's hash.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        blob = path.read_bytes()
        digest = hashlib.sha256(blob).hexdigest()[:12]
        if path.stem.startswith("calibration-") and path.stem != f"calibration-{digest}":
            raise ValueError(
                f"calibration file {path.name} does not match its content hash ({digest}); "
                "it was modified or truncated, refit it with `promptembed calibrate`"
            )
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                mean = data["mean"]
                projection = data["projection"] if "projection" in data.files else None
        except Exception as error:  # zip, npy or JSON damage: all mean "not a calibration"
            raise ValueError(
                f"calibration file {path} is unreadable ({type(error).__name__}: {error}); "
                "refit it with `promptembed calibrate`"
            ) from error
        _check_arrays(path, meta, mean, projection)
        for name, array in (("mean", mean), ("projection", projection)):
            if array is not None and not np.isfinite(array).all():
                raise ValueError(
                    f"calibration file {path} holds non-finite values (NaN or inf) in its "
                    f"{name}: every vector would be NaN; refit it with `promptembed calibrate`"
                )
        return cls(meta.get("method", "center"), mean, projection, meta, source=str(path))

    def check(self, config: EmbedderConfig, hidden_size: int) -> None:
        """Refuse to apply a calibration fitted under another embedder, or under an unknown one.

        Raises:
            ValueError: Naming the fields that differ, with both values, or those that the
                file does not record.
        """
        if len(self.mean) != hidden_size:
            raise ValueError(
                f"calibration {self.source or '(in memory)'} was fitted on "
                f"{len(self.mean)}-wide vectors (mean shape {self.mean.shape}), but this "
                f"model's are {hidden_size}-wide; refit it with `promptembed calibrate`"
            )
        # Files written before max_length and query_template were recorded are checked on
        # the fields they have; a file that lacks any of the others is refused.
        missing = [
            name for name in FIT_FIELDS if name not in self.fitted_on and name not in _LATER_FIELDS
        ]
        if missing:
            raise ValueError(
                f"calibration has no fit record for {', '.join(missing)}: it cannot be checked "
                "against this embedder (it may come from another model); refit it with "
                "`promptembed calibrate`, or pass fitted_on=fit_fields(config) to "
                "Calibration.fit"
            )
        # The fields of the one identity definition; a file written before a field was
        # recorded is checked on the fields it has.
        wanted = fit_record(config)
        diff = {
            name: (self.fitted_on[name], getattr(config, name))
            for name in wanted
            if name in self.fitted_on and self.fitted_on[name] != wanted[name]
        }
        if diff:
            details = "; ".join(
                f"{k}: fitted {a!r}, configured {b!r}" for k, (a, b) in diff.items()
            )
            raise ValueError(f"calibration does not match this embedder ({details}); refit it")


def fit_fields(config: EmbedderConfig) -> dict[str, Any]:
    """The embedder fields recorded in a calibration file (:func:`identity.fit_record`)."""
    return fit_record(config)


def _check_arrays(path: Path, meta: Any, mean: Any, projection: Any) -> None:
    """Refuse a file whose parts have the wrong type or shape, naming the file and shapes.

    ``mean`` must be a non-empty 1-D float array; ``projection`` (when present) a 2-D
    float array ``(len(mean), k)`` with ``k >= 1``; ``meta`` a JSON object.
    """
    problem = None
    if not isinstance(meta, dict):
        problem = f"its meta is a JSON {type(meta).__name__}, not an object"
    elif not _float_array(mean, ndim=1) or mean.shape[0] == 0:
        problem = f"its mean has shape {np.shape(mean)} and dtype {_dtype(mean)}, not (hidden,)"
    elif projection is not None and (
        not _float_array(projection, ndim=2)
        or projection.shape[0] != mean.shape[0]
        or projection.shape[1] == 0
    ):
        problem = (
            f"its projection has shape {np.shape(projection)} and dtype {_dtype(projection)}, "
            f"not ({mean.shape[0]}, k) with k >= 1"
        )
    if problem is not None:
        raise ValueError(
            f"calibration file {path} is malformed: {problem}; refit it with "
            "`promptembed calibrate`"
        )


def _float_array(value: Any, ndim: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == ndim and value.dtype.kind == "f"


def _dtype(value: Any) -> str:
    return str(getattr(value, "dtype", type(value).__name__))
