"""Nothing stale stays searchable: emptied files, chunks changed behind the indexer's back,
and the lexical side following Chroma whoever changed it (issue 21)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")
pytest.importorskip("bm25s")

from typer.testing import CliRunner

from promptembed.cli import app
from promptembed.retrieval.lexical import LexicalIndex

runner = CliRunner()


def _project(tmp_path: Path, model_dirs) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Zanzibar spice harbour secrets.", encoding="utf-8")
    (corpus / "b.txt").write_text("Bread dough proofs slowly overnight.", encoding="utf-8")
    config = tmp_path / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[store]\npath = "db"\ncollection = "docs"\n'
        '[retrieval]\nmode = "hybrid"\nweights = { dense = 0.3, bm25 = 0.7 }\n'
    )
    return corpus, config


def _index(corpus: Path, config: Path, *extra: str, verbose: bool = False) -> str:
    top = ["-v"] if verbose else []
    out = runner.invoke(app, [*top, "index", str(corpus), "--config", str(config), *extra])
    assert out.exit_code == 0, out.output
    return out.output


def _hits(config: Path, text: str) -> list[str]:
    out = runner.invoke(app, ["query", text, "-k", "5", "--config", str(config)])
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.parametrize("how", ["emptied", "binary"])
@pytest.mark.parametrize("prune", [False, True])
def test_a_file_emptied_or_made_unreadable_loses_its_chunks(tmp_path, model_dirs, how, prune):
    corpus, config = _project(tmp_path, model_dirs)
    _index(corpus, config)
    assert "spice harbour" in _hits(config, "Zanzibar")
    if how == "emptied":
        (corpus / "a.txt").write_text("", encoding="utf-8")  # redacted
    else:
        (corpus / "a.txt").write_bytes(bytes(range(256)) * 4)
    output = _index(corpus, config, *(["--prune"] if prune else []), verbose=True)
    assert "1 skipped" in output and "1 stale removed" in output
    assert "spice harbour" not in _hits(config, "Zanzibar")  # neither dense nor BM25 has it
    import chromadb

    docs = chromadb.PersistentClient(str(tmp_path / "db")).get_collection("docs").get()
    assert docs["documents"] == ["Bread dough proofs slowly overnight."]


def test_a_chunk_changed_behind_the_indexers_back_is_restored(tmp_path, model_dirs):
    from promptembed.langchain import open_vectorstore

    corpus, config = _project(tmp_path, model_dirs)
    _index(corpus, config)
    store = open_vectorstore(str(config))
    got = store.get(where={"source": "corpus/a.txt"})
    from langchain_core.documents import Document

    store.update_document(
        got["ids"][0], Document(page_content="Quokka", metadata=got["metadatas"][0])
    )
    # 1.0 = dense 0.3 + BM25 0.7: the lexical side follows Chroma's change (before, BM25
    # still held the old text and this hit scored 0.3).
    assert "1. 1.0000  corpus/a.txt #0  Quokka" in _hits(config, "Quokka")
    output = _index(corpus, config, "--prune")
    assert "1 indexed" in output  # before: reported unchanged, and never restored
    assert "spice harbour" in _hits(config, "Zanzibar")
    assert "Quokka" not in _hits(config, "Quokka").split("\n", 1)[1]


def _save_many(folder: str, seed: int, rounds: int) -> int:
    errors = 0
    for i in range(rounds):
        index = LexicalIndex([f"{seed}-{i}"], [f"text number {seed} {i}"], stemmer=None)
        try:
            index.save(folder)
            LexicalIndex.load(folder)
        except Exception:
            errors += 1
    return errors


@pytest.mark.procs
def test_two_processes_saving_one_lexical_folder_never_collide(tmp_path):
    folder = str(tmp_path / "lexical")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        errors = pool.starmap(_save_many, [(folder, 1, 150), (folder, 2, 150)])
    assert errors == [0, 0]  # before: FileNotFoundError / "Directory not empty"
    assert len(LexicalIndex.load(folder)) == 1
