"""Optional on-disk embedding cache (diskcache), keyed by everything that shapes a vector.

Off by default. With ``embedding_cache="path/to/dir"`` re-embedding a text already
seen by the same weights, template, layer and pooling costs a disk read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np


class EmbeddingCache:
    """A persistent map from (embedder identity, text) to its vector.

    Args:
        directory: Where the diskcache lives (created if missing).
        identity: Everything that changes the vector except the text: weights
            fingerprint, template text, layer, pooling, normalisation, max_length.

    Example:
        >>> cache = EmbeddingCache("/tmp/pe-cache", {"model": "m", "template": "eol"})
        >>> cache.put(["hi"], np.ones((1, 4), dtype=np.float32))
        >>> cache.get(["hi", "new"])[0].shape, cache.get(["hi", "new"])[1]
        ((4,), None)

    """

    def __init__(self, directory: str, identity: dict[str, Any]) -> None:
        from promptembed._optional import require

        diskcache = require("diskcache", "cache")
        self._cache = diskcache.Cache(directory)
        self._namespace = hashlib.sha256(
            json.dumps(identity, sort_keys=True, default=str).encode()
        ).hexdigest()

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._namespace}\0{text}".encode()).hexdigest()

    def get(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vector per text, or ``None`` where it is not cached."""
        out: list[np.ndarray | None] = []
        for text in texts:
            blob = self._cache.get(self._key(text))
            out.append(None if blob is None else np.frombuffer(blob, dtype=np.float32))
        return out

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (float32), atomically per batch."""
        with self._cache.transact():
            for text, vec in zip(texts, vectors):
                self._cache.set(self._key(text), np.asarray(vec, dtype=np.float32).tobytes())

    def close(self) -> None:
        """Release the underlying database."""
        self._cache.close()
