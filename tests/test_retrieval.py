"""Hybrid retrieval: fusion, the lexical channel (Chinese too), config and the store's sync."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from promptembed.config import RetrievalConfig
from promptembed.retrieval import LexicalIndex, SparseIndex, fuse, tokenize

DOCS = {
    "tea": "Green tea lowers blood pressure in adults.",
    "bees": "Honeybees dance to tell each other where the flowers are.",
    "tea-zh": "绿茶可以降低成年人的血压。",
    "tomato-zh": "番茄需要充足的阳光和水分。",
}


def test_weighted_fusion_is_min_max_weighted_sum():
    fused = fuse(
        {"dense": [("a", 0.9), ("b", 0.5), ("c", 0.1)], "bm25": [("c", 12.0), ("d", 2.0)]},
        weights={"dense": 0.25, "bm25": 0.75},
    )
    assert fused == [("c", 0.75), ("a", 0.25), ("b", 0.125), ("d", 0.0)]


def test_rrf_counts_ranks_only():
    fused = fuse({"x": [("a", 100.0), ("b", 1.0)], "y": [("b", 0.2), ("a", 0.1)]}, method="rrf")
    assert [d for d, _ in fused] == ["a", "b"]  # tied scores: by id
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_fusion_refuses_unknown_method_and_weights():
    with pytest.raises(ValueError, match=r"rrf.*weighted"):
        fuse({"x": [("a", 1.0)]}, method="max")
    with pytest.raises(ValueError, match="sparse"):
        fuse({"x": [("a", 1.0)]}, weights={"sparse": 1.0})


def test_chinese_query_matches_chinese_document_lexically():
    index = LexicalIndex(list(DOCS), list(DOCS.values()))
    assert index.search("绿茶降血压", 4)[0][0] == "tea-zh"
    assert index.search("阳光", 4)[0][0] == "tomato-zh"
    assert index.search("blood pressures", 4)[0][0] == "tea"  # stemmed: pressures ~ pressure


def test_tokenize_words_stopwords_stems_and_cjk_bigrams():
    assert tokenize("The dancing bees 蜜蜂跳舞", stemmer="english") == [
        "danc",
        "bee",
        "蜜蜂",
        "蜂跳",
        "跳舞",
    ]
    assert tokenize("茶", stemmer=None) == ["茶"]


def test_lexical_index_round_trip(tmp_path):
    index = LexicalIndex(list(DOCS), list(DOCS.values()), k1=1.5, b=0.5)
    index.save(tmp_path / "lex")
    again = LexicalIndex.load(tmp_path / "lex")
    for query in ("green tea", "绿茶", "flowers dance"):
        assert again.search(query, 3) == index.search(query, 3)
    assert again.ids == index.ids


def test_empty_and_unknown_queries_return_nothing():
    index = LexicalIndex(list(DOCS), list(DOCS.values()))
    assert index.search("", 3) == []
    assert index.search("zzzz qqqq", 3) == []
    assert LexicalIndex([], []).search("tea", 3) == []


def test_sparse_index_round_trip(tmp_path):
    import numpy as np
    import scipy.sparse

    m = scipy.sparse.csr_matrix(np.array([[0, 1.0, 2.0], [3.0, 0, 0], [0, 0, 0]], np.float32))
    index = SparseIndex(["a", "b", "c"], m)
    q = scipy.sparse.csr_matrix(np.array([[1.0, 0, 1.0]], np.float32))
    assert index.search(q, 3) == [("b", 3.0), ("a", 2.0)]
    index.save(tmp_path / "sp")
    assert SparseIndex.load(tmp_path / "sp").search(q, 3) == index.search(q, 3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "sparse"}, "'dense' or 'hybrid'"),
        ({"mode": "hybrid", "fusion": "max"}, "'rrf' or 'weighted'"),
        ({"mode": "hybrid", "channels": ["dense", "splade"]}, "'dense', 'bm25' or 'sparse'"),
        ({"mode": "hybrid", "channels": ["bm25"]}, "at least two channels"),
        ({"mode": "hybrid", "channels": ["bm25", "bm25"]}, "duplicates"),
        ({"channels": ["dense", "sparse"]}, "only applies with mode = 'hybrid'"),
        ({"mode": "hybrid", "weights": {"sparse": 1.0}}, "not in channels"),
        ({"mode": "hybrid", "weights": {"dense": -1.0}}, ">= 0"),
        ({"mode": "hybrid", "candidates": 0}, "greater than or equal to 1"),
    ],
)
def test_retrieval_config_refuses_bad_values(fields, message):
    with pytest.raises(ValidationError, match=message):
        RetrievalConfig(**fields)


def test_retrieval_config_from_toml(tmp_path):
    from promptembed.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(
        '[retrieval]\nmode = "hybrid"\nweights = { dense = 0.3, bm25 = 0.7 }\n'
        'lexical_path = "lex"\n'
    )
    cfg = load_config(path)
    assert cfg.retrieval.active == ["dense", "bm25"]
    assert cfg.retrieval.lexical_path == str((tmp_path / "lex").resolve())


def test_save_survives_a_leftover_from_a_killed_swap(tmp_path):
    index = LexicalIndex(list(DOCS), list(DOCS.values()))
    (tmp_path / "lex.old").mkdir()
    (tmp_path / "lex.old" / "junk").write_text("x")
    index.save(tmp_path / "lex")
    index.save(tmp_path / "lex")  # replaces an existing index too
    assert LexicalIndex.load(tmp_path / "lex").ids == index.ids
    assert not (tmp_path / "lex.old").exists()


def test_unknown_stemmer_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"'klingon'.*english"):
        LexicalIndex(["a"], ["text"], stemmer="klingon")


def test_hybrid_evaluation_fuses_what_the_channels_return(tmp_path, embedder_factory):
    import json

    from promptembed.evaluate import corpus_channels, evaluate_retrieval, fused_runs

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in DOCS.items()),
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
    runs = corpus_channels(emb, DOCS, queries, cfg)
    assert set(runs) == {"dense", "bm25", "sparse"}
    ranked = fused_runs(runs, cfg, list(queries))
    for i, q in enumerate(queries):
        expected = fuse({c: runs[c][i] for c in runs}, weights={"dense": 0.2}, k=100)
        assert ranked[q] == [d for d, _ in expected]
    assert ranked["q2"][0] == "tea-zh"
    result = evaluate_retrieval(emb, corpus, tmp_path / "q.jsonl", tmp_path / "qrels.tsv", cfg)
    assert result.queries == 2 and 0 < result.ndcg_at_10 <= 1


def test_a_dumped_config_loads_again():
    from promptembed.config import Config, load_config

    for retrieval in ({}, {"mode": "hybrid", "channels": ["bm25", "sparse"], "fusion": "rrf"}):
        cfg = load_config({"retrieval": retrieval})
        assert load_config(cfg.model_dump()) == cfg
        assert Config.model_validate_json(cfg.model_dump_json()) == cfg


def test_cli_eval_retrieval_fuses_as_the_config_says(tmp_path, model_dirs, embedder_factory):
    import json

    from typer.testing import CliRunner

    from promptembed.cli import app
    from promptembed.evaluate import evaluate_retrieval

    corpus, queries, qrels = tmp_path / "c.jsonl", tmp_path / "q.jsonl", tmp_path / "r.tsv"
    corpus.write_text("\n".join(json.dumps({"_id": k, "text": v}) for k, v in DOCS.items()))
    queries.write_text(json.dumps({"_id": "q", "text": "绿茶 血压"}))
    qrels.write_text("q\ttea-zh\t1\n")
    toml = tmp_path / "h.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        'template = "eol"\n[retrieval]\nmode = "hybrid"\nweights = { dense = 0.2 }\n'
    )
    args = ["eval", "retrieval", "--config", str(toml), "--json"]
    args += ["--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output.strip().splitlines()[-1])
    cfg = RetrievalConfig(mode="hybrid", weights={"dense": 0.2})
    emb = embedder_factory("llama", template="eol")
    expected = evaluate_retrieval(emb, corpus, queries, qrels, cfg)
    assert got["ndcg@10"] == expected.ndcg_at_10 > 0
    assert got["retrieval"]["mode"] == "hybrid"
