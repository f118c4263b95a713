"""Evaluation: STS (Spearman of cosine vs gold) and BEIR-style retrieval.

Example:
    >>> from promptembed import PromptEmbedder  # doctest: +SKIP
    >>> from promptembed.evaluate import evaluate_sts  # doctest: +SKIP
    >>> evaluate_sts(PromptEmbedder("smollm2-135m"), "stsb-en-dev.csv").spearman  # doctest: +SKIP

"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed.evaluation.data import read_beir
from promptembed.evaluation.metrics import ndcg_recall
from promptembed.ingest.planning import chunk_text
from promptembed.retrieval import SparseIndex, dense_hits, fused_ranking, lexical_index
from promptembed.retrieval.fusion import Hits
from promptembed.retrieval.rerank import check_reranker, rerank_all

if TYPE_CHECKING:
    from promptembed.config import IndexConfig, RerankConfig, RetrievalConfig
    from promptembed.engine.embedder import PromptEmbedder


# -- retrieval -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalResult:
    """Outcome of one retrieval evaluation."""

    ndcg_at_10: float
    recall_at_100: float
    queries: int
    documents: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict with BEIR-style keys (``ndcg@10``, ``recall@100``)."""
        return {
            "ndcg@10": self.ndcg_at_10,
            "recall@100": self.recall_at_100,
            "queries": self.queries,
            "documents": self.documents,
            "seconds": self.seconds,
        }


def rank_by_vectors(
    query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_ids: Sequence[str], k: int = 100
) -> list[list[str]]:
    """Top-k doc ids per query by cosine similarity (:func:`dense_hits` without scores)."""
    return [[d for d, _ in hits] for hits in dense_hits(query_vectors, doc_vectors, doc_ids, k)]


def evaluate_retrieval(
    embedder: PromptEmbedder | None,
    corpus: str | Path,
    queries: str | Path,
    qrels: str | Path,
    retrieval: RetrievalConfig | None = None,
    limit: int | None = None,
    chunking: IndexConfig | None = None,
) -> RetrievalResult:
    """nDCG@10 and Recall@100 on a BEIR-format dataset.

    Documents use the embedder's document template, queries its query template. With
    a hybrid ``retrieval`` config the corpus is also indexed by the lexical channels
    and each query's channels are fused exactly as :func:`promptembed.retrieve` does;
    with ``[retrieval.rerank]`` each ranking is then reranked as it does. ``limit``
    keeps the first ``limit`` judged queries (file order): a quick estimate when
    reranking every query would take long; the whole corpus is still searched.

    With ``chunking`` (an ``[index]`` table), documents are stored the way
    ``promptembed index`` stores files: cut by the indexer's own splitter into chunks,
    each embedded (and BM25-indexed) on its own. Channels, fusion and reranking run
    on chunks, as a store answers; a document then ranks by its best chunk (MaxP).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for every query), got {limit}")
    start = time.perf_counter()
    docs, qs, judged = read_beir(corpus, queries, qrels)
    if limit is not None:
        qs = dict(list(qs.items())[:limit])
    qids = list(qs)
    scored = ranked_documents(embedder, docs, qs, retrieval, chunking)
    ranked = {q: [d for d, _ in hits] for q, hits in scored.items()}
    ndcg, recall = ndcg_recall(ranked, {q: judged[q] for q in qids})
    return RetrievalResult(
        round(ndcg, 4),
        round(recall, 4),
        len(qids),
        len(docs),
        round(time.perf_counter() - start, 1),
    )


def ranked_documents(
    embedder: PromptEmbedder | None,
    docs: Mapping[str, str],
    queries: Mapping[str, str],
    retrieval: RetrievalConfig | None = None,
    chunking: IndexConfig | None = None,
    k: int = 100,
) -> dict[str, list[tuple[str, float]]]:
    """Per query id, the top ``k`` ``(document id, score)``, as :func:`evaluate_retrieval` ranks.

    First stage (dense, or the hybrid's channels fused), then the reranker if the config
    has one; with ``chunking`` all of it runs on chunks and each document keeps its best.
    """
    qids = list(queries)
    passages, owner = split_documents(docs, chunking) if chunking else (dict(docs), None)
    depth = k * max_chunks(owner)  # deep enough for k distinct documents
    if retrieval is not None and retrieval.mode == "hybrid":
        runs = corpus_channels(embedder, passages, queries, retrieval)
        scored = fused_scores(runs, retrieval, qids, depth)
    else:
        if embedder is None:
            raise ValueError("dense retrieval needs an embedder")
        ids = list(passages)
        doc_vectors = embedder.embed([passages[d] for d in ids])
        query_vectors = embedder.embed([queries[q] for q in qids], kind="query")
        scored = dict(zip(qids, dense_hits(query_vectors, doc_vectors, ids, depth)))
    if owner is not None:
        scored = {q: best_chunks(hits, owner) for q, hits in scored.items()}
    if retrieval is not None and retrieval.rerank is not None:
        scored = reranked(scored, queries, passages, embedder, retrieval.rerank)
    return {
        q: [(owner[p] if owner else p, score) for p, score in hits][:k]
        for q, hits in scored.items()
    }


def split_documents(
    docs: Mapping[str, str], chunking: IndexConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Each document cut by the indexer's splitter: ``{chunk id: text}``, ``{chunk id: doc id}``.

    The same :func:`promptembed.ingest.planning.chunk_text` that ``promptembed index``
    runs on a file, so an evaluation scores the chunks a store would hold.
    """
    passages: dict[str, str] = {}
    owner: dict[str, str] = {}
    for doc_id, text in docs.items():
        for chunk in chunk_text(doc_id, text, chunking) if text.strip() else []:
            passages[chunk.id] = chunk.text
            owner[chunk.id] = doc_id
    return passages, owner


def max_chunks(owner: Mapping[str, str] | None) -> int:
    """The most chunks any one document has (1 without chunking)."""
    return max(Counter(owner.values()).values(), default=1) if owner else 1


def best_chunks(hits: Hits, owner: Mapping[str, str]) -> list[tuple[str, float]]:
    """A chunk ranking cut to each document's best chunk (MaxP), best first."""
    seen: set[str] = set()
    out = []
    for chunk_id, score in hits:
        if owner[chunk_id] not in seen:
            seen.add(owner[chunk_id])
            out.append((chunk_id, score))
    return out


def reranked(
    scored: Mapping[str, Sequence[tuple[str, float]]],
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    embedder: PromptEmbedder | None,
    config: RerankConfig,
) -> dict[str, list[tuple[str, float]]]:
    """Each query's ranking with its top ``config.top_k`` reranked (:func:`rerank`).

    Raises:
        ValueError: Without an embedder that scores query likelihood.

    """
    check_reranker(embedder)
    return rerank_all(queries, scored, docs, embedder, config)


def corpus_channels(
    embedder: PromptEmbedder | None,
    docs: Mapping[str, str],
    queries: Mapping[str, str],
    retrieval: RetrievalConfig,
) -> dict[str, list[list[tuple[str, float]]]]:
    """Each active channel's top ``candidates`` per query over an in-memory corpus.

    Dense and sparse vectors come from the same forward passes when both are used.
    """
    active, n = retrieval.active, retrieval.candidates
    doc_ids, doc_texts, query_texts = list(docs), list(docs.values()), list(queries.values())
    runs: dict[str, list[list[tuple[str, float]]]] = {}
    if "bm25" in active:
        index = lexical_index(doc_ids, doc_texts, retrieval)
        runs["bm25"] = [index.search(q, n) for q in query_texts]
    if "dense" in active or "sparse" in active:
        if embedder is None:
            raise ValueError(f"channels {active} need an embedder")
        if "sparse" in active:
            d_vec, d_sparse = embedder.embed_with_sparse(doc_texts)
            q_vec, q_sparse = embedder.embed_with_sparse(query_texts, kind="query")
            runs["sparse"] = sparse_runs(q_sparse, d_sparse, doc_ids, n)
        else:
            d_vec, q_vec = embedder.embed(doc_texts), embedder.embed(query_texts, kind="query")
        if "dense" in active:
            runs["dense"] = dense_hits(q_vec, d_vec, doc_ids, n)
    return runs


def sparse_runs(
    query_rows: Any, doc_rows: Any, doc_ids: Sequence[str], k: int
) -> list[list[tuple[str, float]]]:
    """Top-``k`` ``(id, dot product)`` per query for PromptReps sparse vectors."""
    index = SparseIndex(doc_ids, doc_rows)
    return [index.search(query_rows[i], k) for i in range(query_rows.shape[0])]


def fused_scores(
    runs: Mapping[str, Sequence[Sequence[tuple[str, float]]]],
    retrieval: RetrievalConfig,
    qids: Sequence[str],
    k: int = 100,
) -> dict[str, list[tuple[str, float]]]:
    """Per query id, the fused top-``k`` ``(id, score)`` (``retrieval.fused_ranking``)."""
    return {
        q: fused_ranking({c: runs[c][i] for c in runs}, retrieval, k) for i, q in enumerate(qids)
    }


def fused_runs(
    runs: Mapping[str, Sequence[Sequence[tuple[str, float]]]],
    retrieval: RetrievalConfig,
    qids: Sequence[str],
    k: int = 100,
) -> dict[str, list[str]]:
    """Per query id, the fused top-``k`` doc ids (:func:`fused_scores` without scores)."""
    return {q: [d for d, _ in hits] for q, hits in fused_scores(runs, retrieval, qids, k).items()}
