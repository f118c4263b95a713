"""Hybrid retrieval: dense vectors, BM25 (bm25s) and PromptReps sparse vectors, fused once.

Example:
    >>> import promptembed
    >>> promptembed.retrieve("promptembed.toml", "how do bees talk?", k=3)  # doctest: +SKIP

"""

from __future__ import annotations

from promptembed.retrieval.fusion import fuse
from promptembed.retrieval.hybrid import (
    HybridRetriever,
    dense_hits,
    fused_ranking,
    lexical_folder,
    lexical_index,
    open_retriever,
    retrieve,
    sync_lexical,
    sync_store,
)
from promptembed.retrieval.lexical import LexicalIndex, tokenize
from promptembed.retrieval.sparse_index import SparseIndex

__all__ = [
    "HybridRetriever",
    "LexicalIndex",
    "SparseIndex",
    "dense_hits",
    "fuse",
    "fused_ranking",
    "lexical_folder",
    "lexical_index",
    "open_retriever",
    "retrieve",
    "sync_lexical",
    "sync_store",
    "tokenize",
]
