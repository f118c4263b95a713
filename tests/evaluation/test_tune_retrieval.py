"""`promptembed tune --corpus/--queries/--qrels`: [retrieval] picked from a user's qrels."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promptembed import load_config
from promptembed.cli import app
from promptembed.config import RetrievalConfig
from promptembed.evaluation.retrieval import evaluate_retrieval
from promptembed.evaluation.tuning import retrieval_grid, tune_retrieval

# Each query shares rare words with exactly one document: BM25 finds it, the random
# tiny model's dense vectors do not.
TOPICS = [
    ("honeybees", "waggle dance foragers hive"),
    ("volcanoes", "magma basalt eruption caldera"),
    ("tea", "oolong steeping tannins kettle"),
    ("glaciers", "moraine crevasse icefield meltwater"),
    ("chess", "gambit endgame castling bishop"),
    ("bread", "sourdough yeast crumb proofing"),
    ("comets", "perihelion coma nucleus orbit"),
    ("jazz", "saxophone improvisation syncopation bebop"),
]


@pytest.fixture
def beir(tmp_path):
    corpus, queries, qrels = (
        tmp_path / "corpus.jsonl",
        tmp_path / "queries.jsonl",
        tmp_path / "q.tsv",
    )
    with corpus.open("w") as fh:
        for i, (title, words) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"d{i}", "title": title, "text": f"Notes on {words}."}))
            fh.write("\n")
            filler = "general remarks about many ordinary everyday things"
            fh.write(json.dumps({"_id": f"x{i}", "title": "", "text": f"{filler} {i}."}) + "\n")
    with queries.open("w") as fh:
        for i, (_, words) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"what about {words.split()[1]}?"}) + "\n")
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    return corpus, queries, qrels


@pytest.fixture
def config_file(tmp_path, model_dirs):
    path = tmp_path / "pe.toml"
    path.write_text(
        "# my settings\n[embedder]\n"
        f"model = {str(model_dirs['llama'])!r}\ntemplate = 'eol'\ndevice = 'cpu'\n\n"
        "[retrieval]\ncandidates = 5  # keep me\n"
    )
    return path


def test_grid_is_dense_bm25_nine_weights_and_rrf():
    grid = retrieval_grid(RetrievalConfig(candidates=7, stemmer=""))
    assert grid[0].mode == "dense"
    assert [g.weights.get("dense") for g in grid[1:11]] == [0.0, *[i / 10 for i in range(1, 10)]]
    assert (grid[-1].fusion, grid[-1].rrf_k) == ("rrf", 60)
    assert {(g.candidates, g.stemmer) for g in grid} == {(7, "")}


def test_dense_row_and_every_row_equal_evaluate_retrieval(config_file, beir, embedder_factory):
    embedder = embedder_factory("llama", template="eol")
    result = tune_retrieval(config_file, *beir, embedder=embedder)
    assert len(result.candidates) == 12
    assert result.best.label != "dense"  # the lexical channel wins here
    by_label = {c.label: c for c in result.candidates}
    for label in ("dense", "bm25", "weighted 0.3/0.7", "rrf k=60"):
        plain = evaluate_retrieval(embedder, *beir, by_label[label].retrieval)
        assert (by_label[label].ndcg_at_10, by_label[label].recall_at_100) == (
            plain.ndcg_at_10,
            plain.recall_at_100,
        ), label
    assert by_label["bm25"].ndcg_at_10 > by_label["dense"].ndcg_at_10


def test_cli_writes_the_winner_that_eval_reproduces(config_file, beir, embedder_factory):
    corpus, queries, qrels = beir
    args = ["tune", "--config", str(config_file), "--corpus", str(corpus)]
    args += ["--queries", str(queries), "--qrels", str(qrels), "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    winner = json.loads(out.stdout.splitlines()[-1])["winner"]
    text = config_file.read_text()
    assert "# my settings" in text and "# keep me" in text
    assert "weights = {" in text  # an inline table, as a user writes it
    cfg = load_config(config_file)
    assert cfg.retrieval.mode == "hybrid" == winner["mode"]
    assert (cfg.retrieval.fusion, cfg.retrieval.weights) == (winner["fusion"], winner["weights"])
    assert cfg.retrieval.candidates == 5
    scored = evaluate_retrieval(embedder_factory("llama", template="eol"), *beir, cfg.retrieval)
    assert scored.ndcg_at_10 == winner["ndcg@10"]


def test_cli_refuses_sts_options_with_corpus_and_writes_nothing(config_file, beir):
    before = config_file.read_text()
    corpus, queries, _ = beir
    args = ["tune", "--config", str(config_file), "--corpus", str(corpus)]
    out = CliRunner().invoke(app, [*args, "--queries", str(queries), "--data", "x.csv"])
    assert out.exit_code != 0 and "--data" in out.output
    out = CliRunner().invoke(app, [*args, "--queries", str(queries), "--max-ensemble", "2"])
    assert out.exit_code != 0 and "--max-ensemble" in out.output
    out = CliRunner().invoke(app, args)
    assert out.exit_code != 0 and "--qrels" in out.output
    assert config_file.read_text() == before


def _second_collection(root):
    """Another BEIR folder: the same topics, other words, half the queries judged."""
    root.mkdir()
    corpus, queries, qrels = root / "corpus.jsonl", root / "queries.jsonl", root / "q.tsv"
    with corpus.open("w") as fh:
        for i, (title, words) in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"e{i}", "title": "", "text": f"{title}: {words}"}) + "\n")
    with queries.open("w") as fh:
        for i, (title, words) in enumerate(TOPICS[:4]):
            fh.write(json.dumps({"_id": f"p{i}", "text": f"{title} {words.split()[0]}"}) + "\n")
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"p{i}\te{i}\t1\n" for i in range(4)))
    return corpus, queries, qrels


def test_several_collections_pick_the_largest_smallest_gain(
    config_file, beir, tmp_path, embedder_factory
):
    embedder = embedder_factory("llama", template="eol")
    other = _second_collection(tmp_path / "other")
    both = tune_retrieval(config_file, *zip(beir, other), embedder=embedder)
    alone = [tune_retrieval(config_file, *one, embedder=embedder) for one in (beir, other)]
    for candidate in both.candidates:
        assert [s.name for s in candidate.sets] == [tmp_path.name, "other"]
        for s, single in zip(candidate.sets, alone):
            row = next(c for c in single.candidates if c.label == candidate.label)
            bm25 = next(c for c in single.candidates if c.label == "bm25")
            assert (s.ndcg_at_10, s.recall_at_100) == (row.ndcg_at_10, row.recall_at_100)
            assert s.gain == round(row.ndcg_at_10 - bm25.ndcg_at_10, 4)
        assert candidate.min_gain == min(s.gain for s in candidate.sets)
    gains = [c.min_gain for c in both.candidates]
    assert gains == sorted(gains, reverse=True)


def test_cli_refuses_unpaired_collections_and_writes_nothing(config_file, beir, tmp_path):
    before = config_file.read_text()
    corpus, queries, qrels = beir
    other = _second_collection(tmp_path / "other")
    args = ["tune", "--config", str(config_file), "--corpus", str(corpus)]
    args += ["--corpus", str(other[0]), "--queries", str(queries), "--qrels", str(qrels)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2 and "2 corpus, 1 queries, 1 qrels" in out.output, out.output
    assert config_file.read_text() == before
