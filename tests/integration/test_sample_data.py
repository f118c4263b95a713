"""The sample data under examples/data makes the docs' eval commands run as written."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from promptembed.cli import app
from promptembed.evaluation import read_beir, read_sts

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
runner = CliRunner()


def test_the_sts_samples_read_as_sts_pairs():
    for language in ("en", "zh"):
        pairs = read_sts(DATA / "stsb" / f"stsb-{language}-dev-300.csv")
        assert len(pairs) == 300 and all(0 <= score <= 5 for _, _, score in pairs)
    assert (DATA / "stsb" / "LICENSE").is_file()


def test_the_beir_sample_runs_through_eval_retrieval(model_dirs):
    corpus, queries, qrels = (
        DATA / "beir-demo" / "corpus.jsonl",
        DATA / "beir-demo" / "queries.jsonl",
        DATA / "beir-demo" / "qrels" / "test.tsv",
    )
    docs, asked, relevant = read_beir(corpus, queries, qrels)
    assert len(docs) == 10 and len(asked) == 12 and all(relevant[q] for q in asked)
    args = ["eval", "retrieval", "--corpus", str(corpus), "--queries", str(queries)]
    out = runner.invoke(
        app, [*args, "--qrels", str(qrels), "--model", str(model_dirs["llama"]), "--device", "cpu"]
    )
    assert out.exit_code == 0, out.output
    assert "ndcg" in out.output.lower()
