"""Chroma adapter: :class:`PromptEmbeddingFunction` and :func:`open_collection`.

Requires the ``chroma`` extra (``pip install 'promptembed[chroma]'``). Importing this
module registers the function with Chroma under the name ``promptembed``, so a
collection created with it can be reopened (in any process that imported
``promptembed.chroma``) without passing the function: Chroma rebuilds it from the
config stored with the collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptembed._util.optional import require

require("chromadb", "chroma")

from promptembed.config import Config
from promptembed.store.function import PromptEmbeddingFunction, open_checked_collection
from promptembed.store.guard import EmbedderConflictError

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.engine.embedder import PromptEmbedder

__all__ = ["EmbedderConflictError", "PromptEmbeddingFunction", "open_collection"]


def open_collection(
    config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
) -> Any:
    """Open or create the config's Chroma collection with the embedding function set.

    Args:
        config: A :class:`Config`, TOML path or dict with ``embedder`` and ``store``.
        embedder: An already loaded embedder to reuse.

    Returns:
        A ``chromadb`` Collection; ``add(documents=...)`` and ``query(query_texts=...)``
        embed through promptembed.

    Raises:
        promptembed.guard.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> col = open_collection("promptembed.toml")  # doctest: +SKIP
        >>> col.query(query_texts=["what is chroma?"], n_results=3)  # doctest: +SKIP

    """
    return open_checked_collection(config, embedder)[1]
