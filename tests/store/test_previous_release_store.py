"""A store written by the previous release (949f7b9) opens and answers alike in this one.

The fixture under ``tests/fixtures/store-0.3`` was made by the old code's ``promptembed
index`` (see ``tests/fixtures/make_store_0_3.py``); ``expected.json`` holds its answers.
The model path in the stored identity is relative (``model = "model"``), as the release
records the config's ``model`` verbatim, so each test works inside a copy of the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("chromadb")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-0.3"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
QUERIES = EXPECTED["queries"]
TOL = 1e-5


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the old project folder (the store may be migrated when opened)."""
    dest = tmp_path_factory.mktemp("old-release") / "project"
    shutil.copytree(FIXTURE, dest)
    return dest


@pytest.fixture
def inside(project, monkeypatch) -> Path:
    monkeypatch.chdir(project)  # the stored model path is relative to the working directory
    return project


def test_the_fixture_is_the_previous_release_and_small():
    assert EXPECTED["release"] == "949f7b9"
    assert (FIXTURE / "db" / "chroma.sqlite3").is_file()
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 2_000_000


@pytest.mark.parametrize("case", QUERIES, ids=lambda q: q["text"][:20])
def test_cli_query_gives_the_old_ids_and_scores(inside, case):
    from promptembed.cli import app

    got = CliRunner().invoke(
        app, ["query", case["text"], "-k", "3", "--config", "promptembed.toml", "--json"]
    )
    assert got.exit_code == 0, got.output
    hits = [json.loads(line) for line in got.stdout.splitlines()]
    assert [h["id"] for h in hits] == [h["id"] for h in case["cli"]]
    assert [h["source"] for h in hits] == [h["source"] for h in case["cli"]]
    for hit, old in zip(hits, case["cli"], strict=True):
        assert abs(hit["score"] - old["score"]) < TOL


def _same_as_recorded(result: dict, case: dict) -> None:
    assert result["ids"][0] == case["chroma"]["ids"]
    for new, old in zip(result["distances"][0], case["chroma"]["distances"], strict=True):
        assert abs(new - old) < TOL


@pytest.mark.parametrize("case", QUERIES, ids=lambda q: q["text"][:20])
def test_open_collection_gives_the_old_ids_and_distances(inside, case):
    from promptembed.chroma import open_collection

    collection = open_collection("promptembed.toml")
    assert collection.count() == len(list((inside / "docs").iterdir()))
    _same_as_recorded(collection.query(query_texts=[case["text"]], n_results=3), case)


def test_plain_chroma_client_rebuilds_the_old_function(inside):
    import chromadb

    import promptembed.chroma  # noqa: F401  (registers the stored function's name)

    client = chromadb.PersistentClient(path=str(inside / "db"))
    collection = client.get_collection(EXPECTED["collection"])
    for case in QUERIES:
        _same_as_recorded(collection.query(query_texts=[case["text"]], n_results=3), case)
