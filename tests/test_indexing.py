"""Indexing: stable ids, idempotence, per-file replacement, kill-and-resume."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

import chromadb

from _adapters import run_python, store_config
from promptembed.config import load_config
from promptembed.indexing import chunk_text, index_paths, plan_corpus, query

SMALL_CHUNKS = {"chunk_size": 32, "chunk_overlap": 0}


def write_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "bees.md").write_text(
        "# Bees\n\nA forager bee dances to show where flowers are. The angle of the run "
        "points to the food. The length of the run tells the distance.\n\n## Scent\n\n"
        "Dancers carry the smell of the flowers and share drops of nectar with others.\n",
        encoding="utf-8",
    )
    (corpus / "bread.txt").write_text(
        "Feed the starter before mixing. Let the dough proof until it springs back "
        "slowly. Preheat the oven for thirty minutes and score the loaf before baking.",
        encoding="utf-8",
    )
    (corpus / "tea.md").write_text(
        "# 绿茶\n\n绿茶不需要发酵。泡绿茶的水温不宜太高，八十度左右最合适。", encoding="utf-8"
    )
    (corpus / "skip.json").write_text("{}", encoding="utf-8")
    return corpus


def cfg_for(tmp_path, model_dirs, **index):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    return load_config({**cfg, "index": {**SMALL_CHUNKS, **index}})


def stored(tmp_path) -> dict[str, dict]:
    col = chromadb.PersistentClient(str(tmp_path / "db")).get_collection(
        "docs", embedding_function=None
    )
    got = col.get(include=["metadatas", "documents"])
    assert len(got["ids"]) == len(set(got["ids"]))
    return {i: {**m, "text": d} for i, m, d in zip(got["ids"], got["metadatas"], got["documents"])}


def test_chunk_ids_are_stable_and_content_bound():
    a = chunk_text("c/a.md", "# T\n\nOne sentence. Another one.")
    b = chunk_text("c/a.md", "# T\n\nOne sentence. Another one.")
    assert [c.id for c in a] == [c.id for c in b] and a
    assert chunk_text("c/b.md", "# T\n\nOne sentence. Another one.")[0].id != a[0].id
    assert chunk_text("c/a.md", "# T\n\nOne sentence. Changed.")[0].id != a[0].id


def test_index_is_idempotent_and_queryable(tmp_path, model_dirs, embedder_factory):
    corpus = write_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    plan = plan_corpus([corpus], cfg.index)
    assert len(plan) > 3 and {c.source for c in plan} == {
        "corpus/bees.md",
        "corpus/bread.txt",
        "corpus/tea.md",
    }
    first = index_paths([corpus], cfg, embedder=emb, batch_size=2)
    assert first.embedded == first.chunks == len(plan)
    assert set(stored(tmp_path)) == {c.id for c in plan}

    calls: list[int] = []
    real = emb.embed
    try:
        emb.embed = lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw)
        second = index_paths([corpus], cfg, embedder=emb)
    finally:
        del emb.embed
    assert second.embedded == 0 and second.deleted == 0 and calls == []
    assert second.unchanged_files == 3
    assert set(stored(tmp_path)) == {c.id for c in plan}

    target = plan[1]
    hits = query(target.text, cfg, k=3, embedder=emb)
    assert hits[0].id == target.id and hits[0].source == target.source
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_changed_file_replaces_only_its_chunks(tmp_path, model_dirs, embedder_factory):
    corpus = write_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    index_paths([corpus], cfg, embedder=emb)
    before = stored(tmp_path)
    (corpus / "bread.txt").write_text("Rye bread needs a longer rest.", encoding="utf-8")
    stats = index_paths([corpus], cfg, embedder=emb)
    after = stored(tmp_path)
    old_bread = {i for i, m in before.items() if m["source"] == "corpus/bread.txt"}
    new_bread = {i for i, m in after.items() if m["source"] == "corpus/bread.txt"}
    assert stats.embedded == 1 and stats.deleted == len(old_bread)
    assert not old_bread & new_bread
    assert [after[i]["text"] for i in new_bread] == ["Rye bread needs a longer rest."]
    others = {i: m for i, m in before.items() if m["source"] != "corpus/bread.txt"}
    assert {i: after[i] for i in others} == others  # untouched
    assert set(stored(tmp_path)) == {c.id for c in plan_corpus([corpus], cfg.index)}


def test_deleted_file_is_pruned_only_when_asked(tmp_path, model_dirs, embedder_factory):
    corpus = write_corpus(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("Notes from another directory.", encoding="utf-8")
    cfg = cfg_for(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    index_paths([corpus, other], cfg, embedder=emb)
    (corpus / "tea.md").unlink()
    kept = index_paths([corpus], cfg, embedder=emb)
    assert kept.pruned == 0 and any(
        m["source"] == "corpus/tea.md" for m in stored(tmp_path).values()
    )
    pruned = index_paths([corpus], cfg, embedder=emb, prune=True)
    sources = {m["source"] for m in stored(tmp_path).values()}
    assert pruned.pruned > 0 and pruned.embedded == 0
    # The deleted file is gone; the other directory, not indexed this run, is untouched.
    assert sources == {"corpus/bees.md", "corpus/bread.txt", "other/notes.txt"}


KILL_SCRIPT = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from promptembed.config import load_config
from promptembed.indexing import index_paths

method, after = sys.argv[1], int(sys.argv[2])
real = getattr(Collection, method)
calls = 0

def hooked(self, *args, **kwargs):
    global calls
    calls += 1
    if calls > after:  # die before this call runs
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

setattr(Collection, method, hooked)
cfg = load_config(sys.argv[3])
index_paths([sys.argv[4]], cfg, batch_size=1)
print("finished without being killed")
"""


@pytest.mark.parametrize(
    ("method", "after"),
    [("upsert", 1), ("delete", 0)],
    ids=["mid-upserts", "before-stale-delete"],
)
def test_kill_and_resume(tmp_path, model_dirs, embedder_factory, method, after):
    corpus = write_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    # An earlier state to move away from: the killed run has stale chunks to delete.
    (corpus / "bees.md").write_text("# Bees\n\nAn old note about bees.", encoding="utf-8")
    index_paths([corpus], cfg, embedder=emb)
    (tmp_path / "fresh").mkdir()
    corpus_state = write_corpus(tmp_path / "fresh")  # the new contents
    for f in corpus_state.iterdir():
        (corpus / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")

    toml = tmp_path / "cfg.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\npath = "{(tmp_path / "db").as_posix()}"\ncollection = "docs"\n'
        f"[index]\nchunk_size = 32\nchunk_overlap = 0\n",
        encoding="utf-8",
    )
    script = KILL_SCRIPT.replace("sys.argv[1]", repr(method)).replace(
        "int(sys.argv[2])", str(after)
    )
    script = script.replace("sys.argv[3]", repr(str(toml))).replace(
        "sys.argv[4]", repr(str(corpus))
    )
    killed = run_python(script, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    expected = {c.id: c for c in plan_corpus([corpus], cfg.index)}
    partial = set(stored(tmp_path))
    assert partial != set(expected)  # the kill really interrupted the run

    stats = index_paths([corpus], cfg, embedder=emb)
    final = stored(tmp_path)
    assert set(final) == set(expected)
    for id_, chunk in expected.items():
        assert final[id_]["text"] == chunk.text and final[id_]["source"] == chunk.source
    assert stats.embedded == len(set(expected) - partial)
    assert index_paths([corpus], cfg, embedder=emb).embedded == 0
