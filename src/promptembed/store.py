"""Compatibility shim: store.py was split by job.

* :mod:`promptembed.guard`: may this collection take vectors from this embedder?
* :mod:`promptembed.registry`: one loaded embedder per config per process.
* :mod:`promptembed._optional`: :func:`require`, the one optional-import helper.
* :mod:`promptembed.chroma`: :func:`open_checked_collection` and :func:`make_client`.

Import from those modules; these names stay importable from here.
"""

from __future__ import annotations

from typing import Any

from promptembed._optional import require
from promptembed.guard import (
    EF_NAME,
    FORMAT_VERSION,
    META_DIMENSION,
    META_IDENTITY,
    META_VERSION,
    EmbedderConflictError,
    check_compatible,
    collection_marker,
)
from promptembed.registry import _EMBEDDERS, embedder_config, shared_embedder

__all__ = [
    "EF_NAME",
    "FORMAT_VERSION",
    "META_DIMENSION",
    "META_IDENTITY",
    "META_VERSION",
    "_EMBEDDERS",
    "EmbedderConflictError",
    "check_compatible",
    "collection_marker",
    "embedder_config",
    "require",
    "shared_embedder",
]


def __getattr__(name: str) -> Any:
    # Chroma-bound names load chromadb only when asked for (and keep this shim cycle-free).
    if name in ("open_checked_collection", "make_client"):
        from promptembed import chroma

        return getattr(chroma, name)
    raise AttributeError(f"module 'promptembed.store' has no attribute {name!r}")
