"""Hybrid retrieval over a store: dense vectors in Chroma, BM25 beside them, one fusion.

The lexical index is derived from the collection itself (its ids and documents), so
the two sides cannot disagree for long: :func:`sync_lexical` compares the ids the
index holds with the ids Chroma holds and rebuilds the index when they differ. It
runs at the end of every ``promptembed index`` run and whenever a retriever opens or
notices that the collection's size changed, so a mismatch left by a killed run is
repaired before any query is answered from it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed._util.vectors import unit
from promptembed.config import Config, RetrievalConfig, load_config
from promptembed.registry import shared_embedder
from promptembed.retrieval.fusion import Hits, fuse
from promptembed.retrieval.lexical import LexicalIndex, content_digest
from promptembed.retrieval.rerank import check_local_model, check_reranker, rerank
from promptembed.retrieval.sparse_index import SparseIndex, top_hits
from promptembed.retrieval.sparse_side import sync_sparse
from promptembed.store.collections import stored_records
from promptembed.store.guard import cosine_from_distance, space_of
from promptembed.store.reading import Hit, make_hit, open_for_reading

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder
    from promptembed.store.reading import Hit

log = logging.getLogger(__name__)


def dense_hits(
    query_vectors: np.ndarray, doc_vectors: np.ndarray, ids: Sequence[str], k: int
) -> list[list[tuple[str, float]]]:
    """Top-``k`` ``(id, cosine)`` per query row, best first."""
    scores = unit(query_vectors) @ unit(doc_vectors).T
    return [top_hits(row, ids, k, positive=False) for row in scores]


def fused_ranking(
    channels: dict[str, Hits], retrieval: RetrievalConfig, k: int
) -> list[tuple[str, float]]:
    """The one ranking every face returns: one channel as is, several fused."""
    active = {name: channels[name] for name in retrieval.active}
    if len(active) == 1:
        return list(next(iter(active.values())))[:k]
    return fuse(
        active, method=retrieval.fusion, weights=retrieval.weights, rrf_k=retrieval.rrf_k, k=k
    )


def lexical_index(ids: Sequence[str], texts: Sequence[str], r: RetrievalConfig) -> LexicalIndex:
    """A BM25 index built with the config's tokenizer and parameters."""
    return LexicalIndex(ids, texts, stemmer=r.stemmer or None, k1=r.bm25_k1, b=r.bm25_b)


# -- the lexical side of a store -----------------------------------------------------------
def lexical_folder(config: Config) -> Path:
    """Where a store's lexical index lives (``[retrieval] lexical_path`` or next to the store).

    Raises:
        ValueError: For a Chroma server without ``lexical_path``, or no store.

    """
    store, r = config.store, config.retrieval
    if r.lexical_path:
        return Path(r.lexical_path).expanduser() / (store.collection if store else "index")
    if store is None or store.path is None:
        raise ValueError(
            "hybrid retrieval over a Chroma server needs [retrieval] lexical_path: the folder "
            "where promptembed keeps the BM25 index of the collection"
        )
    return Path(store.path) / "promptembed-lexical" / store.collection


def sync_lexical(collection: Any, folder: str | Path, retrieval: RetrievalConfig) -> LexicalIndex:
    """The collection's BM25 index, rebuilt from Chroma unless it holds the same content.

    Chroma is the source of truth, whoever wrote to it: the saved index records a digest
    of the ``(id, text)`` pairs it was built from, so a chunk changed in place (same id,
    new text, e.g. LangChain's ``update_document``) makes it stale too. A missing,
    unreadable, stale or differently parametrised index is rebuilt from the stored
    documents and saved atomically.
    """
    folder = Path(folder)
    records = list(stored_records(collection, documents=True))
    ids = [r["id"] for r in records]
    docs = [r["document"] or "" for r in records]
    try:
        index: LexicalIndex | None = LexicalIndex.load(folder)
    except (OSError, ValueError, KeyError):
        index = None
    if index is not None and _same(index, content_digest(ids, docs), retrieval):
        return index
    log.info(
        "rebuilding the lexical index of %s (%d chunks) in %s", collection.name, len(ids), folder
    )
    index = lexical_index(ids, docs, retrieval)
    index.save(folder)
    return index


def _same(index: LexicalIndex, digest: str, r: RetrievalConfig) -> bool:
    params = (index.stemmer, index.bm25.k1, index.bm25.b) if index.ids else (index.stemmer,)
    wanted = (r.stemmer or None, r.bm25_k1, r.bm25_b)[: len(params)]
    return params == wanted and index.digest == digest


def sparse_path(config: Config) -> Path:
    """Where a store's sparse index lives: ``<collection>.sparse.npz`` beside the lexical one."""
    folder = lexical_folder(config)
    return folder.with_name(folder.name + ".sparse.npz")


def sync_store(
    config: Config, collection: Any, embedder: PromptEmbedder | None = None
) -> tuple[LexicalIndex | None, SparseIndex | None]:
    """Bring the store's side indexes (BM25, sparse) in line with its collection.

    ``promptembed index`` calls this once its upserts and deletes are done, and a
    retriever when it opens or finds a side stale. The sparse side embeds only chunks it
    has no current row for; the model is loaded (or the given ``embedder`` used) only
    then.

    Returns:
        The lexical and the sparse index, each None where no channel uses it.

    """
    active = config.retrieval.active
    lexical = sparse = None
    if "bm25" in active:
        lexical = sync_lexical(collection, lexical_folder(config), config.retrieval)
    if "sparse" in active:

        def embed(texts: list[str]) -> Any:
            return (embedder or shared_embedder(config.embedder)).embed_sparse(texts)

        sparse = sync_sparse(collection, sparse_path(config), embed)
    return lexical, sparse


class HybridRetriever:
    """Answers queries from a store with the configured mode, channels and fusion.

    Args:
        config: A :class:`Config` (TOML path or dict) with ``[store]`` and ``[retrieval]``.
        embedder: An already loaded embedder to reuse.

    Example:
        >>> r = HybridRetriever("promptembed.toml")  # doctest: +SKIP
        >>> [hit.source for hit in r.search("how do bees talk?", k=2)]  # doctest: +SKIP
        ['corpus/honeybees.md', 'corpus/honeybees.md']

    """

    def __init__(
        self, config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
    ) -> None:

        self.config = load_config(config)
        self.retrieval = self.config.retrieval
        # Reading never creates a collection, and checks it against the loaded weights.
        self.collection, self.embedder = open_for_reading(self.config, embedder)
        if self.retrieval.rerank is not None:
            check_reranker(self.embedder)
        if "sparse" in self.retrieval.active:
            check_local_model(self.embedder, "embed_sparse", "retrieval.channels 'sparse'")
        self._space = space_of(self.collection)  # an adopted drop-in store may use l2 or ip
        self._lock = threading.Lock()
        self.lexical: LexicalIndex | None = None
        self.sparse: SparseIndex | None = None
        self._sync_sides()

    def _sync_sides(self) -> None:
        """Each side index in line with the collection (run at open, and when stale)."""
        self.lexical, self.sparse = sync_store(self.config, self.collection, self.embedder)

    def _fresh_sides(self) -> None:
        """Resync the side indexes if the collection's size moved since they were built."""
        sides = [side for side in (self.lexical, self.sparse) if side is not None]
        if not sides:
            return
        with self._lock:
            count = self.collection.count()
            if any(len(side) != count for side in sides):
                self._sync_sides()

    def channels(self, query: str, n: int) -> dict[str, Hits]:
        """Each active channel's top ``n`` ``(id, score)`` for one query."""
        out: dict[str, Hits] = {}
        self._fresh_sides()
        vector, sparse = self._query_vectors(query)
        if vector is not None:
            res = self.collection.query(query_embeddings=vector, n_results=n, include=["distances"])
            out["dense"] = [
                (i, cosine_from_distance(self._space, float(d)))
                for i, d in zip(res["ids"][0], res["distances"][0])
            ]
        if sparse is not None and self.sparse is not None:
            out["sparse"] = self.sparse.search(sparse, n)
        if self.lexical is not None:
            out["bm25"] = self.lexical.search(query, n)
        return out

    def _query_vectors(self, query: str) -> tuple[np.ndarray | None, Any]:
        """The query's dense vector and sparse row, from one pass when both are used."""
        dense, sparse = "dense" in self.retrieval.active, "sparse" in self.retrieval.active
        if dense and sparse:
            return self.embedder.embed_with_sparse([query], kind="query")
        if sparse:
            return None, self.embedder.embed_sparse([query], kind="query")
        return (self.embedder.embed([query], kind="query") if dense else None), None

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best chunks, fused and reranked as configured, with their final score."""
        n = max(k, self.retrieval.candidates)
        rerank_cfg = self.retrieval.rerank
        depth = max(k, rerank_cfg.top_k) if rerank_cfg else k
        for attempt in (1, 2):
            ranked = fused_ranking(self.channels(query, n), self.retrieval, depth)
            ids = [doc for doc, _ in ranked]
            got = self.collection.get(ids=ids, include=["documents", "metadatas"])
            no_sides = self.lexical is None and self.sparse is None
            if len(got["ids"]) == len(ids) or no_sides or attempt == 2:
                break
            # A side index names a chunk Chroma no longer holds: it is stale (another
            # process changed the collection). Resync and answer again, never from it.
            with self._lock:
                self._sync_sides()
        rows = {i: (d, m or {}) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}
        ranked = [(doc, score) for doc, score in ranked if doc in rows]
        if rerank_cfg is not None:
            texts = {doc: rows[doc][0] or "" for doc, _ in ranked}
            ranked = rerank(query, ranked, texts, self.embedder, rerank_cfg)[:k]
        return [
            make_hit(rank, doc_id, *rows[doc_id], float(score))
            for rank, (doc_id, score) in enumerate(ranked, start=1)
        ]


# Weak values, as the embedder registry: a retriever (and, through it, its loaded model)
# lives while a caller or an adapter's retriever holds it and is freed with the last one;
# a plain dict would keep every store's model and BM25 index for the life of the process.
_OPEN: weakref.WeakValueDictionary[str, HybridRetriever] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _retriever_key(config: Config) -> str:
    """What identifies a retriever: the whole config, with its store paths made absolute.

    Two configs that differ in any field never share a retriever; a relative path names
    another store from another working directory, so it is resolved first.

    Example:
        >>> from promptembed.config import load_config
        >>> _retriever_key(load_config({})) == _retriever_key(load_config({}))
        True

    """
    paths = []
    if config.store is not None and config.store.path is not None:
        paths.append(str(Path(config.store.path).expanduser().resolve()))
    if config.retrieval.lexical_path:
        paths.append(str(Path(config.retrieval.lexical_path).expanduser().resolve()))
    return "\x00".join([config.model_dump_json(), *paths])


def open_retriever(config: str | Path | dict[str, Any] | Config) -> HybridRetriever:
    """The process's :class:`HybridRetriever` for a config, shared while anything holds it.

    Holders of the same config share one retriever (and one loaded model); once the last
    holder drops it, it is freed and the next call opens the store again. Hold the result
    to answer many queries without reopening.
    """
    cfg = load_config(config)
    key = _retriever_key(cfg)
    with _OPEN_LOCK:
        retriever = _OPEN.get(key)
        if retriever is None:
            retriever = HybridRetriever(cfg, shared_embedder(cfg.embedder))
            _OPEN[key] = retriever
        return retriever


def retrieve(config: str | Path | dict[str, Any] | Config, query: str, k: int = 5) -> list[Hit]:
    """The ``k`` best chunks of the config's store for ``query``, with its retrieval mode.

    Uses the config's open retriever if something holds one; else one is opened for this
    call and freed after it (for many queries, hold :func:`open_retriever`'s result).

    Example:
        >>> import promptembed
        >>> promptembed.retrieve("promptembed.toml", "green tea", k=3)  # doctest: +SKIP

    """
    return open_retriever(config).search(query, k)
