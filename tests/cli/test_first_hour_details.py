"""Small things a newcomer meets in the first hour (issue 23): pages, help, warnings, logs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promptembed.cli import app
from tests.helpers import make_pdf

runner = CliRunner()


def _config(tmp_path, model_dirs, extra: str = "") -> str:
    config = tmp_path / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n{extra}'
        '[store]\npath = "db"\ncollection = "docs"\n'
    )
    return str(config)


def test_query_names_a_pdf_hit_by_its_page(tmp_path, model_dirs):
    pytest.importorskip("pypdf")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(make_pdf(["Cover page words", "Quarterly honey yield"]))
    config = _config(tmp_path, model_dirs)
    assert runner.invoke(app, ["index", str(corpus), "--config", config]).exit_code == 0
    out = runner.invoke(app, ["query", "honey yield", "-k", "2", "--config", config])
    assert out.exit_code == 0, out.output
    assert "corpus/report.pdf p.2" in out.output and "#1" not in out.output
    as_json = runner.invoke(app, ["query", "honey yield", "--json", "--config", config])
    pages = {json.loads(line)["page"] for line in as_json.stdout.splitlines()}
    assert pages == {1, 2}


def test_index_help_lists_every_suffix_it_reads():
    out = runner.invoke(app, ["index", "--help"])
    for suffix in (".md", ".markdown", ".txt", ".pdf", ".html", ".htm"):
        assert suffix in out.output


def test_a_warning_in_the_cli_is_one_line_without_typers_location(tmp_path, model_dirs):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "long.txt").write_text("word " * 400, encoding="utf-8")
    config = _config(tmp_path, model_dirs, "max_length = 120\n")
    out = runner.invoke(app, ["index", str(corpus), "--config", config])
    assert out.exit_code == 0, out.output
    assert "warning:" in out.output and "truncated" in out.output
    assert "typer" not in out.output and "click" not in out.output


def test_bm25s_keeps_quiet_without_verbose(tmp_path, model_dirs):
    pytest.importorskip("bm25s")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"_id": i, "title": "", "text": t})
            for i, t in [("1", "green tea lowers blood pressure"), ("2", "bees dance")]
        )
    )
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "green tea"}))
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq\t1\t1\n")
    args = ["eval", "retrieval", "--corpus", str(corpus), "--queries"]
    args += [str(tmp_path / "queries.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]
    config = tmp_path / "hybrid.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[retrieval]\nmode = "hybrid"\nchannels = ["dense", "bm25"]\n'
    )
    out = runner.invoke(app, [*args, "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert "DEBUG" not in out.output and "Building index" not in out.output
