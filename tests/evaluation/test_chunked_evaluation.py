"""Chunked evaluation: documents cut and ranked the way a store built by the indexer is."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")
pytest.importorskip("bm25s")

from promptembed.config import IndexConfig, load_config
from promptembed.evaluation.retrieval import (
    evaluate_retrieval,
    max_chunks,
    ranked_documents,
    split_documents,
)
from promptembed.ingest.pipeline import index_paths
from promptembed.ingest.planning import chunk_text
from promptembed.retrieval import HybridRetriever

DOCS = {
    "tea": "Green tea lowers blood pressure in adults. It is brewed at eighty degrees. "
    "Black tea is oxidised before drying, which gives it a darker colour and taste.",
    "bees": "Honeybees dance to tell each other where the flowers are. The angle of the "
    "run points to the food. Foragers also carry the scent of the flowers home.",
    "bread": "Feed the starter before mixing. Let the dough proof until it springs back. "
    "Preheat the oven for thirty minutes and score the loaf before baking it.",
    "tea-zh": "绿茶可以降低成年人的血压。泡绿茶的水温大约是八十度。红茶在干燥前经过发酵。",
}
QUERIES = {
    "q1": "water temperature for green tea",
    "q2": "how do bees share the scent",
    "q3": "绿茶 水温",
}
CHUNKS = IndexConfig(chunk_size=16, chunk_overlap=0)
HYBRID = {"mode": "hybrid", "weights": {"dense": 0.3, "bm25": 0.7}, "candidates": 50}


def test_documents_are_cut_by_the_indexers_own_splitter():
    passages, owner = split_documents(DOCS, CHUNKS)
    for doc_id, text in DOCS.items():
        mine = [passages[c] for c in passages if owner[c] == doc_id]
        assert mine == [c.text for c in chunk_text(doc_id, text, CHUNKS)]
    assert max_chunks(owner) > 1  # the test is about documents of several chunks


def test_chunked_ranking_is_the_stores_ranking_by_best_chunk(
    tmp_path, model_dirs, embedder_factory
):
    folder = tmp_path / "files"
    folder.mkdir()
    for doc_id, text in DOCS.items():
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    cfg = load_config(
        {
            "embedder": {"model": str(model_dirs["llama"]), "device": "cpu"},
            "store": {"path": str(tmp_path / "db"), "collection": "docs"},
            "index": CHUNKS.model_dump(),
            "retrieval": HYBRID,
        }
    )
    emb = embedder_factory("llama")
    index_paths([folder], cfg, embedder=emb, root=folder)
    retriever = HybridRetriever(cfg, emb)
    evaluated = ranked_documents(emb, DOCS, QUERIES, cfg.retrieval, cfg.index)
    for qid, query in QUERIES.items():
        seen: dict[str, float] = {}
        for hit in retriever.search(query, k=50):
            seen.setdefault(hit.source.removesuffix(".txt"), hit.score)
        assert [d for d, _ in evaluated[qid]] == list(seen)
        # Chroma returns float32 distances; min-max fusion scales their rounding up.
        assert [s for _, s in evaluated[qid]] == pytest.approx(list(seen.values()), abs=1e-4)


def test_whole_documents_rank_as_before_without_chunking(tmp_path, embedder_factory):
    emb = embedder_factory("llama")
    from promptembed.evaluation.retrieval import dense_hits

    expected = dense_hits(
        emb.embed(list(QUERIES.values()), kind="query"),
        emb.embed(list(DOCS.values())),
        list(DOCS),
        100,
    )
    assert list(ranked_documents(emb, DOCS, QUERIES).values()) == expected


def test_cli_chunk_options_need_chunked_and_valid_sizes(tmp_path):
    from typer.testing import CliRunner

    from promptembed.cli import app
    from tests.helpers import one_line_error

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in DOCS.items()))
    (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "q1", "text": "tea"}))
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ttea\t1\n")
    base = ["eval", "retrieval", "--corpus", str(corpus), "--queries", str(tmp_path / "q.jsonl")]
    base += ["--qrels", str(tmp_path / "qrels.tsv"), "--model", "/nonexistent-model"]
    out = CliRunner().invoke(app, [*base, "--chunk-size", "64"])
    assert out.exit_code != 0
    assert "--chunk-size need --chunked" in one_line_error(out)
    out = CliRunner().invoke(
        app, [*base, "--chunked", "--chunk-size", "32", "--chunk-overlap", "32"]
    )
    assert out.exit_code != 0
    assert "valid overlaps are 0..31" in one_line_error(out)


def test_cli_chunked_reports_the_library_number_and_its_chunking(
    tmp_path, model_dirs, embedder_factory
):
    from typer.testing import CliRunner

    from promptembed.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in DOCS.items()))
    (tmp_path / "q.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in QUERIES.items())
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\ttea\t1\nq2\tbees\t1\nq3\ttea-zh\t1\n"
    )
    files = [corpus, tmp_path / "q.jsonl", tmp_path / "qrels.tsv"]
    args = ["eval", "retrieval", "--corpus", str(files[0]), "--queries", str(files[1])]
    args += ["--qrels", str(files[2]), "--model", str(model_dirs["llama"]), "--device", "cpu"]
    out = CliRunner().invoke(
        app, [*args, "--chunked", "--chunk-size", "16", "--chunk-overlap", "0", "--json"]
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["chunking"] == CHUNKS.model_dump()
    expected = evaluate_retrieval(embedder_factory("llama"), *files, chunking=CHUNKS)
    assert payload["ndcg@10"] == expected.ndcg_at_10
