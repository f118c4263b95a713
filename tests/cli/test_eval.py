"""`promptembed eval` (STS and retrieval) from the command line: results, errors, hints."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promptembed.cli import app
from promptembed.config import RetrievalConfig
from tests.helpers import RETRIEVAL_DOCS


def test_cli_eval_reports_the_precision(tmp_path, model_dirs):
    pytest.importorskip("torchao")
    data = tmp_path / "mini.csv"
    data.write_text("A man is dancing.,A man dances.,5\nA cat.,Stocks fell.,0\nA dog.,A pup.,4\n")
    args = ["eval", "sts", "--data", str(data), "--model", str(model_dirs["llama"])]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--dtype", "int8", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    assert row["dtype"] == "int8"


def test_cli_eval_sts_json(tmp_path, model_dirs):
    data = tmp_path / "mini.csv"
    data.write_text("A man is dancing.,A man dances.,5\nA cat.,Stocks fell.,0\nA dog.,A puppy.,4\n")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "sts",
            "--data",
            str(data),
            "--data",
            str(data),
            "--model",
            str(model_dirs["llama"]),
            "--template",
            "eol",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2
    for row in lines:
        assert {"spearman", "pairs", "sentences", "seconds"} <= row.keys()
        assert row["pairs"] == 3 and row["sentences"] == 6 and -100 <= row["spearman"] <= 100


def test_cli_bad_template_is_a_clear_error(tmp_path, model_dirs):
    data = tmp_path / "mini.csv"
    data.write_text("a,b,1\n")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "sts",
            "--data",
            str(data),
            "--model",
            str(model_dirs["llama"]),
            "--template",
            "nonsense",
        ],
    )
    assert result.exit_code == 2
    assert "has no '{text}' placeholder" in result.output


def test_cli_missing_extra_hint_is_printed_whole():
    # Rich markup must not eat "[chroma]" out of an install hint.
    from promptembed.cli.base import err, fail

    with err.capture() as captured:
        fail(ImportError("pip install 'promptembed[chroma]'"))
    assert "promptembed[chroma]" in captured.get()


def test_cli_eval_retrieval_fuses_as_the_config_says(tmp_path, model_dirs, embedder_factory):
    import json

    from typer.testing import CliRunner

    from promptembed.cli import app
    from promptembed.evaluation.retrieval import evaluate_retrieval

    corpus, queries, qrels = tmp_path / "c.jsonl", tmp_path / "q.jsonl", tmp_path / "r.tsv"
    corpus.write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in RETRIEVAL_DOCS.items())
    )
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
    got = json.loads(out.stdout)
    cfg = RetrievalConfig(mode="hybrid", weights={"dense": 0.2})
    emb = embedder_factory("llama", template="eol")
    expected = evaluate_retrieval(emb, corpus, queries, qrels, cfg)
    assert got["ndcg@10"] == expected.ndcg_at_10 > 0
    assert got["retrieval"]["mode"] == "hybrid"


@pytest.mark.parametrize(
    ("command", "table"), [("retrieval", "[retrieval]"), ("mteb", "[mteb.templates]")]
)
def test_eval_help_keeps_the_config_table_it_names(command, table):
    # Rich markup would read "[retrieval]" as a style tag and print nothing in its place.
    out = CliRunner().invoke(app, ["eval", command, "--help"])
    assert out.exit_code == 0 and table in " ".join(out.stdout.split()), out.stdout
