"""A calibrated collection travels with its store folder (issue 23): copied elsewhere, it
reopens with no search path, through the CLI and through Chroma in a fresh process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

from typer.testing import CliRunner

from promptembed.cli import app
from promptembed.config import SEARCH_PATH_ENV
from tests.helpers import calibration_file, run_python

runner = CliRunner()


def _config(folder: Path, model: Path, calibration: str) -> Path:
    config = folder / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model.as_posix()}"\ndevice = "cpu"\ntemplate = "eol"\n'
        f'calibration = "{calibration}"\n[store]\npath = "db"\ncollection = "docs"\n'
    )
    return config


@pytest.mark.procs
def test_a_copied_store_reopens_its_calibrated_collection_with_no_search_path(
    tmp_path, model_dirs, monkeypatch
):
    monkeypatch.delenv(SEARCH_PATH_ENV, raising=False)
    here = tmp_path / "project"
    corpus = here / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "bees.txt").write_text("Honeybees dance to show where flowers are.")
    (corpus / "tea.txt").write_text("Green tea lowers blood pressure.")
    name = Path(calibration_file(model_dirs["llama"], here, "whiten")).name
    config = _config(here, model_dirs["llama"], name)
    assert runner.invoke(app, ["index", str(corpus), "--config", str(config)]).exit_code == 0
    before = runner.invoke(app, ["query", "bees", "--json", "--config", str(config)])
    assert (here / "db" / "promptembed-calibrations" / name).is_file()

    there = tmp_path / "elsewhere"
    there.mkdir()
    shutil.copytree(here / "db", there / "db")  # the store alone: no calibration beside it
    moved = _config(there, model_dirs["llama"], name)
    after = runner.invoke(app, ["query", "bees", "--json", "--config", str(moved)])
    assert after.exit_code == 0, after.output  # before: "calibration ... not found"
    assert [json.loads(x)["id"] for x in after.stdout.splitlines()] == [
        json.loads(x)["id"] for x in before.stdout.splitlines()
    ]
    code = (
        "import chromadb, promptembed.chroma\n"
        f"col = chromadb.PersistentClient({str(there / 'db')!r}).get_collection('docs')\n"
        "print(col.query(query_texts=['bees'], n_results=1)['ids'][0][0])\n"
    )
    out = run_python(code, env={SEARCH_PATH_ENV: ""}, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == json.loads(before.stdout.splitlines()[0])["id"]
