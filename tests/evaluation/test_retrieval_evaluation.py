"""Retrieval evaluation: the hybrid runs fuse what each channel returns."""

from __future__ import annotations

from promptembed.config import RetrievalConfig
from promptembed.retrieval import fuse
from tests.helpers import RETRIEVAL_DOCS


def test_hybrid_evaluation_fuses_what_the_channels_return(tmp_path, embedder_factory):
    import json

    from promptembed.evaluation.retrieval import corpus_channels, evaluate_retrieval, fused_runs

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"_id": k, "title": "", "text": v}) for k, v in RETRIEVAL_DOCS.items()
        ),
        encoding="utf-8",
    )
    queries = {"q1": "green tea blood pressure", "q2": "绿茶 血压"}
    (tmp_path / "q.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in queries.items()), encoding="utf-8"
    )
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ttea\t1\nq2\ttea-zh\t1\n")
    emb = embedder_factory("llama", template="eol")
    cfg = RetrievalConfig(
        mode="hybrid", channels=["dense", "bm25", "sparse"], weights={"dense": 0.2}
    )
    runs = corpus_channels(emb, RETRIEVAL_DOCS, queries, cfg)
    assert set(runs) == {"dense", "bm25", "sparse"}
    ranked = fused_runs(runs, cfg, list(queries))
    for i, q in enumerate(queries):
        expected = fuse({c: runs[c][i] for c in runs}, weights={"dense": 0.2}, k=100)
        assert ranked[q] == [d for d, _ in expected]
    assert ranked["q2"][0] == "tea-zh"
    result = evaluate_retrieval(emb, corpus, tmp_path / "q.jsonl", tmp_path / "qrels.tsv", cfg)
    assert result.queries == 2 and 0 < result.ndcg_at_10 <= 1


def test_limit_scores_the_first_judged_queries_only(tmp_path, embedder_factory):
    import json

    import pytest

    from promptembed.evaluation.retrieval import evaluate_retrieval

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in RETRIEVAL_DOCS.items()),
        encoding="utf-8",
    )
    queries = {"q1": "green tea blood pressure", "q2": "绿茶 血压"}
    (tmp_path / "q.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in queries.items()), encoding="utf-8"
    )
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ttea\t1\nq2\ttea-zh\t1\n")
    (tmp_path / "qrels1.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ttea\t1\n")
    emb = embedder_factory("llama")
    cfg = RetrievalConfig(mode="hybrid")
    paths = (corpus, tmp_path / "q.jsonl")
    first = evaluate_retrieval(emb, *paths, tmp_path / "qrels.tsv", cfg, limit=1)
    only = evaluate_retrieval(emb, *paths, tmp_path / "qrels1.tsv", cfg)
    assert first.queries == 1
    assert (first.ndcg_at_10, first.recall_at_100) == (only.ndcg_at_10, only.recall_at_100)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        evaluate_retrieval(emb, *paths, tmp_path / "qrels.tsv", cfg, limit=0)
