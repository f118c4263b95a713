"""The `index`, `query` and `demo` commands, and what importing the package pulls in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptembed.cli import DEMO_QUERIES, app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


@pytest.fixture
def toml(tmp_path, model_dirs) -> Path:
    path = tmp_path / "promptembed.toml"
    path.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[store]\npath = "db"\ncollection = "docs"\n',
        encoding="utf-8",
    )
    return path


def test_index_then_query(toml, tmp_path):
    corpus = EXAMPLES / "corpus"
    first = runner.invoke(app, ["index", str(corpus), "--config", str(toml)])
    assert first.exit_code == 0, first.output
    assert "embedded" in first.output and (tmp_path / "db").is_dir()  # path relative to toml
    second = runner.invoke(app, ["index", str(corpus), "--config", str(toml)])
    assert second.exit_code == 0 and " 0 embedded" in second.output, second.output

    text = (corpus / "lighthouses.txt").read_text(encoding="utf-8").strip()
    out = runner.invoke(app, ["query", text, "-k", "3", "--config", str(toml), "--json"])
    assert out.exit_code == 0, out.output
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    # Keyed by the path relative to the config's folder (here outside it).
    assert hits[0]["source"].endswith("/examples/corpus/lighthouses.txt")
    assert hits[0]["score"] > 0.999
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    shown = runner.invoke(app, ["query", text, "-k", "2", "--config", str(toml)])
    assert shown.exit_code == 0 and "1. " in shown.output and "lighthouses.txt" in shown.output


def test_prune_flag_removes_deleted_files_chunks(toml, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(EXAMPLES / "corpus", corpus)
    assert runner.invoke(app, ["index", str(corpus), "--config", str(toml)]).exit_code == 0
    (corpus / "lighthouses.txt").unlink()
    out = runner.invoke(app, ["index", str(corpus), "--config", str(toml), "--prune"])
    assert out.exit_code == 0 and "pruned" in out.output, out.output
    text = (EXAMPLES / "corpus" / "lighthouses.txt").read_text(encoding="utf-8").strip()
    got = runner.invoke(app, ["query", text, "-k", "50", "--config", str(toml), "--json"])
    sources = {json.loads(x)["source"] for x in got.stdout.splitlines()}
    assert sources and "corpus/lighthouses.txt" not in sources  # keyed relative to the toml
    assert "corpus/honeybees.md" in sources


def test_conflict_and_missing_store_exit_with_a_message(toml, tmp_path, model_dirs):
    corpus = EXAMPLES / "corpus"
    assert runner.invoke(app, ["index", str(corpus), "--config", str(toml)]).exit_code == 0
    bad = runner.invoke(app, ["query", "x", "--config", str(toml), "--template", "eol"])
    assert bad.exit_code == 2 and "differs in" in bad.output and "template" in bad.output
    nostore = runner.invoke(app, ["query", "x", "--model", str(model_dirs["llama"])])
    assert nostore.exit_code == 2 and "no store configured" in nostore.output


def test_demo_runs_on_the_example_corpus(model_dirs, tmp_path):
    out = runner.invoke(
        app,
        ["demo", "--model", str(model_dirs["llama"]), "--device", "cpu", "--store", str(tmp_path)],
    )
    assert out.exit_code == 0, out.output
    assert "indexed 10 files" in out.output
    for query in DEMO_QUERIES:
        assert query in out.output
    assert out.output.count(" 1. ") == len(DEMO_QUERIES)
    assert any(q for q in DEMO_QUERIES if any("\u4e00" <= ch <= "\u9fff" for ch in q))


def test_messy_folder_reports_each_file_and_strict_fails(toml, tmp_path):
    corpus = tmp_path / "messy"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"good{i}.txt").write_text(f"Good note number {i}.", encoding="utf-8")
    (corpus / "latin1.txt").write_bytes("Un café très chaud.".encode("latin-1"))
    (corpus / "random.txt").write_bytes(bytes(range(256)) * 4)
    (corpus / "empty.md").write_text("", encoding="utf-8")
    (corpus / "data.json").write_text("{}", encoding="utf-8")
    out = runner.invoke(app, ["index", str(corpus), "--config", str(toml)])
    assert out.exit_code == 0, out.output
    assert "4 indexed" in out.output and "3 skipped" in out.output
    for name, reason in [("random.txt", "not text"), ("empty.md", "empty"), ("data.json", "no")]:
        line = next(x for x in out.output.splitlines() if name in x)
        assert "skipped" in line and reason in line
    strict = runner.invoke(app, ["index", str(corpus), "--config", str(toml), "--strict"])
    assert strict.exit_code == 1 and "--strict" in strict.output
    assert " 0 embedded" in strict.output  # the good files were already stored


def test_query_on_a_missing_collection_is_an_error(toml, tmp_path):
    import chromadb

    args = ["query", "bees", "--config", str(toml), "--collection", "nothing-here"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2
    assert "'nothing-here' does not exist" in out.output and "promptembed index" in out.output
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    assert [c.name for c in client.list_collections()] == []


def test_model_options_on_index_and_query_are_honoured(toml, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Bees dance to show where flowers are.", encoding="utf-8")
    opts = ["--layer", "-2", "--query-template", "eol", "--dtype", "float32"]
    first = runner.invoke(app, ["index", str(corpus), "--config", str(toml), *opts])
    assert first.exit_code == 0, first.output
    same = runner.invoke(app, ["query", "bees", "--config", str(toml), "--json", *opts])
    assert same.exit_code == 0 and '"source": "c/a.txt"' in same.output, same.output
    other = runner.invoke(app, ["query", "bees", "--config", str(toml), "--layer", "-1"])
    assert other.exit_code == 2 and "differs in: layer" in " ".join(other.output.split())
