"""Evaluation: STS (Spearman of cosine vs gold) and BEIR-style retrieval.

Example:
    >>> from promptembed import PromptEmbedder  # doctest: +SKIP
    >>> from promptembed.evaluate import evaluate_sts  # doctest: +SKIP
    >>> evaluate_sts(PromptEmbedder("smollm2-135m"), "stsb-en-dev.csv").spearman  # doctest: +SKIP

"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from promptembed.config import RetrievalConfig
    from promptembed.embedder import PromptEmbedder


@dataclass(frozen=True)
class StsResult:
    """Outcome of one STS evaluation."""

    data: str
    spearman: float
    """Spearman correlation ×100 between cosine similarity and gold scores."""
    pairs: int
    sentences: int
    """Distinct sentences embedded."""
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict, for JSON output."""
        return asdict(self)


def read_sts(path: str | Path) -> list[tuple[str, str, float]]:
    """Read an STS CSV of ``s1,s2,score`` rows (no header, stsb-multi-mt format).

    Raises:
        ValueError: On a row that is not two sentences and a number, naming its line.

    """
    rows: list[tuple[str, str, float]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            try:
                s1, s2, score = row
                rows.append((s1, s2, float(score)))
            except ValueError:
                if line == 1 and len(row) == 3:
                    continue  # a header line
                raise ValueError(f"{path}:{line}: expected s1,s2,score, got {row!r}") from None
    return rows


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation ×100."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) * 100.0


def evaluate_sts(
    embedder: PromptEmbedder,
    data: str | Path | Sequence[tuple[str, str, float]],
    *,
    name: str | None = None,
) -> StsResult:
    """Spearman ×100 of cosine similarity against gold scores.

    Each distinct sentence is embedded once.

    Args:
        embedder: The embedder.
        data: A CSV path or ``(s1, s2, score)`` triples.
        name: Label for the result (defaults to the file name).

    """
    pairs = read_sts(data) if isinstance(data, (str, Path)) else list(data)
    label = name or (str(data) if isinstance(data, (str, Path)) else "pairs")
    start = time.perf_counter()
    sentences = sorted({s for s1, s2, _ in pairs for s in (s1, s2)})
    index = {s: i for i, s in enumerate(sentences)}
    vectors = embedder.embed(sentences)
    vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    a = vectors[[index[s1] for s1, _, _ in pairs]]
    b = vectors[[index[s2] for _, s2, _ in pairs]]
    cosine = (a * b).sum(axis=1)
    score = spearman(cosine.tolist(), [g for _, _, g in pairs])
    seconds = time.perf_counter() - start
    return StsResult(label, round(score, 2), len(pairs), len(sentences), round(seconds, 1))


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


def read_beir(
    corpus: str | Path, queries: str | Path, qrels: str | Path
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Read a BEIR corpus (``title`` + ``text``), queries and a qrels TSV."""
    docs: dict[str, str] = {}
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            docs[str(row["_id"])] = " ".join(p for p in (row.get("title"), row.get("text")) if p)
    judged: dict[str, dict[str, int]] = {}
    with open(qrels, encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or not row[2].lstrip("-").isdigit():
                continue  # header
            judged.setdefault(row[0], {})[row[1]] = int(row[2])
    qs: dict[str, str] = {}
    with open(queries, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in judged:
                qs[str(row["_id"])] = row["text"]
    return docs, qs, judged


def ndcg_recall(
    ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> tuple[float, float]:
    """Mean nDCG@10 and Recall@100 of ranked doc ids per query (graded gains, BEIR style)."""
    ndcgs, recalls = [], []
    for qid, rels in qrels.items():
        docs = list(ranked.get(qid, []))
        gains = [rels.get(d, 0) for d in docs[:10]]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(rels.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcgs.append(dcg / idcg if idcg > 0 else 0.0)
        relevant = {d for d, g in rels.items() if g > 0}
        recalls.append(len(relevant & set(docs[:100])) / len(relevant) if relevant else 0.0)
    return float(np.mean(ndcgs)), float(np.mean(recalls))


def rank_by_vectors(
    query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_ids: Sequence[str], k: int = 100
) -> list[list[str]]:
    """Top-k doc ids per query by cosine similarity."""
    q = query_vectors / np.clip(np.linalg.norm(query_vectors, axis=1, keepdims=True), 1e-12, None)
    d = doc_vectors / np.clip(np.linalg.norm(doc_vectors, axis=1, keepdims=True), 1e-12, None)
    scores = q @ d.T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    return [[doc_ids[j] for j in row] for row in ordered]


def evaluate_retrieval(
    embedder: PromptEmbedder | None,
    corpus: str | Path,
    queries: str | Path,
    qrels: str | Path,
    retrieval: RetrievalConfig | None = None,
) -> RetrievalResult:
    """nDCG@10 and Recall@100 on a BEIR-format dataset.

    Documents use the embedder's document template, queries its query template. With
    a hybrid ``retrieval`` config the corpus is also indexed by the lexical channels
    and each query's channels are fused exactly as :func:`promptembed.retrieve` does.
    """
    start = time.perf_counter()
    docs, qs, judged = read_beir(corpus, queries, qrels)
    doc_ids, qids = list(docs), list(qs)
    if retrieval is not None and retrieval.mode == "hybrid":
        runs = corpus_channels(embedder, docs, qs, retrieval)
        ranked = fused_runs(runs, retrieval, qids)
    else:
        doc_vectors = embedder.embed([docs[d] for d in doc_ids])
        query_vectors = embedder.embed([qs[q] for q in qids], kind="query")
        ranked = dict(zip(qids, rank_by_vectors(query_vectors, doc_vectors, doc_ids)))
    ndcg, recall = ndcg_recall(ranked, {q: judged[q] for q in qids})
    return RetrievalResult(
        round(ndcg, 4),
        round(recall, 4),
        len(qids),
        len(doc_ids),
        round(time.perf_counter() - start, 1),
    )


def corpus_channels(
    embedder: PromptEmbedder | None,
    docs: Mapping[str, str],
    queries: Mapping[str, str],
    retrieval: RetrievalConfig,
) -> dict[str, list[list[tuple[str, float]]]]:
    """Each active channel's top ``candidates`` per query over an in-memory corpus.

    Dense and sparse vectors come from the same forward passes when both are used.
    """
    from promptembed.retrieval import dense_hits, lexical_index

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
    from promptembed.retrieval import SparseIndex

    index = SparseIndex(doc_ids, doc_rows)
    return [index.search(query_rows[i], k) for i in range(query_rows.shape[0])]


def fused_runs(
    runs: Mapping[str, Sequence[Sequence[tuple[str, float]]]],
    retrieval: RetrievalConfig,
    qids: Sequence[str],
    k: int = 100,
) -> dict[str, list[str]]:
    """Per query id, the fused top-``k`` doc ids (``promptembed.retrieval.fused_ranking``)."""
    from promptembed.retrieval import fused_ranking

    return {
        q: [d for d, _ in fused_ranking({c: runs[c][i] for c in runs}, retrieval, k)]
        for i, q in enumerate(qids)
    }


def read_texts(paths: Sequence[str | Path], limit: int | None = None, seed: int = 0) -> list[str]:
    """Distinct texts from sample files, for fitting a calibration.

    ``.csv`` files are read as STS pairs (both sentences), ``.jsonl`` as BEIR rows
    (title + text), anything else as one text per non-empty line. With ``limit``, a
    seeded random subset of that size is returned.
    """
    seen: dict[str, None] = {}
    for path in paths:
        suffix = Path(path).suffix
        if suffix == ".csv":
            items = [s for a, b, _ in read_sts(path) for s in (a, b)]
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            items = [" ".join(p for p in (r.get("title"), r.get("text")) if p) for r in rows]
        else:
            items = [line.strip() for line in iter_lines(path)]
        seen.update(dict.fromkeys(t for t in items if t.strip()))
    texts = list(seen)
    if limit is not None and len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), limit, replace=False))]
    return texts


def iter_lines(path: str | Path) -> Iterable[str]:
    """Yield the lines of a text file without their newline (for streaming embeds)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\n")
