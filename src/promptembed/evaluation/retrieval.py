"""Evaluation: STS (Spearman of cosine vs gold) and BEIR-style retrieval.

Example:
    >>> from promptembed import PromptEmbedder  # doctest: +SKIP
    >>> from promptembed.evaluate import evaluate_sts  # doctest: +SKIP
    >>> evaluate_sts(PromptEmbedder("smollm2-135m"), "stsb-en-dev.csv").spearman  # doctest: +SKIP

"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from promptembed.evaluation.data import read_beir
from promptembed.evaluation.metrics import ndcg_recall
from promptembed.retrieval import SparseIndex, dense_hits, fused_ranking, lexical_index
from promptembed.retrieval.rerank import check_reranker, rerank

if TYPE_CHECKING:
    from promptembed.config import RerankConfig, RetrievalConfig
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
) -> RetrievalResult:
    """nDCG@10 and Recall@100 on a BEIR-format dataset.

    Documents use the embedder's document template, queries its query template. With
    a hybrid ``retrieval`` config the corpus is also indexed by the lexical channels
    and each query's channels are fused exactly as :func:`promptembed.retrieve` does;
    with ``[retrieval.rerank]`` each ranking is then reranked as it does. ``limit``
    keeps the first ``limit`` judged queries (file order): a quick estimate when
    reranking every query would take long; the whole corpus is still searched.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for every query), got {limit}")
    start = time.perf_counter()
    docs, qs, judged = read_beir(corpus, queries, qrels)
    if limit is not None:
        qs = dict(list(qs.items())[:limit])
    doc_ids, qids = list(docs), list(qs)
    if retrieval is not None and retrieval.mode == "hybrid":
        runs = corpus_channels(embedder, docs, qs, retrieval)
        scored = fused_scores(runs, retrieval, qids)
    else:
        if embedder is None:
            raise ValueError("dense retrieval needs an embedder")
        doc_vectors = embedder.embed([docs[d] for d in doc_ids])
        query_vectors = embedder.embed([qs[q] for q in qids], kind="query")
        scored = dict(zip(qids, dense_hits(query_vectors, doc_vectors, doc_ids, 100)))
    if retrieval is not None and retrieval.rerank is not None:
        scored = reranked(scored, qs, docs, embedder, retrieval.rerank)
    ranked = {q: [d for d, _ in hits] for q, hits in scored.items()}
    ndcg, recall = ndcg_recall(ranked, {q: judged[q] for q in qids})
    return RetrievalResult(
        round(ndcg, 4),
        round(recall, 4),
        len(qids),
        len(doc_ids),
        round(time.perf_counter() - start, 1),
    )


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
    show = bool(getattr(getattr(embedder, "config", None), "show_progress", False))
    return {
        q: rerank(queries[q], hits, docs, embedder, config)
        for q, hits in tqdm(scored.items(), desc="rerank", unit="query", disable=not show)
    }


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
