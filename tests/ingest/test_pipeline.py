"""Indexing: stable ids, idempotence, per-file replacement, kill-and-resume."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

import chromadb

from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.ingest.planning import plan_corpus
from promptembed.store.reading import query
from tests.helpers import index_killed_at, store_config, write_corpus

SMALL_CHUNKS = {"chunk_size": 32, "chunk_overlap": 0}


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


def test_index_is_idempotent_and_queryable(tmp_path, model_dirs, embedder_factory):
    corpus = write_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    plan = plan_corpus([corpus], cfg.index, root=tmp_path)
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
    assert [(o.source, o.status) for o in second.outcomes if o.status != "unchanged"] == [
        ("corpus/skip.json", "skipped")
    ]
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
    assert set(stored(tmp_path)) == {c.id for c in plan_corpus([corpus], cfg.index, root=tmp_path)}


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


@pytest.mark.procs
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
    killed = index_killed_at(toml, corpus, method, after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    expected = {c.id: c for c in plan_corpus([corpus], cfg.index, root=tmp_path)}
    partial = set(stored(tmp_path))
    assert partial != set(expected)  # the kill really interrupted the run

    stats = index_paths([corpus], cfg, embedder=emb)
    final = stored(tmp_path)
    assert set(final) == set(expected)
    for id_, chunk in expected.items():
        assert final[id_]["text"] == chunk.text and final[id_]["source"] == chunk.source
    assert stats.embedded == len(set(expected) - partial)
    assert index_paths([corpus], cfg, embedder=emb).embedded == 0


def write_messy_corpus(root: Path, good: int = 20) -> Path:
    """``good`` clean files plus one of each kind of trouble a real folder holds."""
    from tests.helpers import make_pdf

    corpus = root / "messy"
    corpus.mkdir()
    for i in range(good):
        (corpus / f"note{i:02d}.txt").write_text(
            f"Note {i}: the bees visit flower bed {i} at dawn.", encoding="utf-8"
        )
    (corpus / "latin1.txt").write_bytes("Le café est très chaud ce matin, déjà.".encode("latin-1"))
    (corpus / "utf16.md").write_bytes(
        "# Tea\n\nGreen tea wants water at eighty degrees.".encode("utf-16")
    )
    (corpus / "random.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "empty.md").write_text("", encoding="utf-8")
    (corpus / "manual.pdf").write_bytes(make_pdf(["Lighthouses guide ships.", "Fog horns warn."]))
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (corpus / ".hidden.txt").write_text("never indexed", encoding="utf-8")
    return corpus


def test_every_file_gets_an_outcome_and_bad_files_do_not_stop_the_run(
    tmp_path, model_dirs, embedder_factory
):
    pytest.importorskip("pypdf")
    corpus = write_messy_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    stats = index_paths([corpus], cfg, embedder=embedder_factory("llama"))
    status = {o.source.removeprefix("messy/"): (o.status, o.detail) for o in stats.outcomes}
    assert ".hidden.txt" not in status and len(status) == 26
    indexed = {name for name, (s, _) in status.items() if s == "indexed"}
    assert indexed == {f"note{i:02d}.txt" for i in range(20)} | {
        "latin1.txt",
        "utf16.md",
        "manual.pdf",
    }
    assert status["random.txt"][0] == "skipped" and "not text" in status["random.txt"][1]
    assert status["empty.md"] == ("skipped", "empty")
    assert status["image.png"][0] == "skipped" and "no reader" in status["image.png"][1]

    rows = stored(tmp_path)
    texts = {m["source"].removeprefix("messy/"): m["text"] for m in rows.values()}
    assert "café est très chaud" in texts["latin1.txt"]  # decoded, not mojibake
    assert "Green tea wants water" in texts["utf16.md"]
    pages = sorted((m["page"], m["text"]) for m in rows.values() if "page" in m)
    assert pages == [(1, "Lighthouses guide ships."), (2, "Fog horns warn.")]
    assert {m["source"] for m in rows.values()} == {f"messy/{n}" for n in indexed}


def test_same_named_directories_keep_all_their_chunks(tmp_path, model_dirs, embedder_factory):
    emb = embedder_factory("llama")
    cfg = cfg_for(tmp_path, model_dirs)
    for side in ("a", "b"):
        (tmp_path / side / "docs").mkdir(parents=True)
        (tmp_path / side / "docs" / "same.txt").write_text(f"Side {side} text.", encoding="utf-8")
    index_paths([tmp_path / "a" / "docs"], cfg, embedder=emb)
    second = index_paths([tmp_path / "b" / "docs"], cfg, embedder=emb)
    assert second.deleted == 0
    pruned = index_paths([tmp_path / "b" / "docs"], cfg, embedder=emb, prune=True)
    assert pruned.pruned == 0
    by_source = {m["source"]: m["text"] for m in stored(tmp_path).values()}
    assert by_source == {"a/docs/same.txt": "Side a text.", "b/docs/same.txt": "Side b text."}


def test_namespace_keys_and_prune_stay_inside_the_namespace(tmp_path, model_dirs, embedder_factory):
    emb = embedder_factory("llama")
    cfg = cfg_for(tmp_path, model_dirs)
    corpus = write_corpus(tmp_path)
    index_paths([corpus], cfg, embedder=emb)
    index_paths([corpus], cfg, embedder=emb, namespace="mirror")
    (corpus / "tea.md").unlink()
    stats = index_paths([corpus], cfg, embedder=emb, namespace="mirror", prune=True)
    sources = {m["source"] for m in stored(tmp_path).values()}
    assert stats.pruned > 0
    assert sources == {
        "corpus/bees.md",
        "corpus/bread.txt",
        "corpus/tea.md",  # another namespace: untouched
        "mirror:bees.md",
        "mirror:bread.txt",
    }


def test_keys_are_stable_when_the_project_moves(tmp_path, model_dirs, embedder_factory):
    import shutil

    emb = embedder_factory("llama")
    project = tmp_path / "project"
    project.mkdir()
    write_corpus(project)
    toml = project / "promptembed.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[store]\npath = "db"\ncollection = "docs"\n',
        encoding="utf-8",
    )
    first = index_paths([project / "corpus"], toml, embedder=emb)
    moved = shutil.move(project, tmp_path / "moved")
    again = index_paths([Path(moved) / "corpus"], Path(moved) / "promptembed.toml", embedder=emb)
    assert first.embedded > 0 and again.embedded == 0 and again.deleted == 0


def test_legacy_keys_are_re_keyed_without_embedding(tmp_path, model_dirs, embedder_factory):
    from promptembed.store.function import open_checked_collection

    emb = embedder_factory("llama")
    cfg = cfg_for(tmp_path, model_dirs)
    corpus = write_corpus(tmp_path)
    # The 0.1 layout: "<folder name>/<path>" keys, no namespace field in the metadata.
    _, col, _ = open_checked_collection(cfg, emb)
    legacy = plan_corpus([corpus], cfg.index, root=tmp_path)  # same keys as 0.1 here
    vectors = emb.embed([c.text for c in legacy])
    col.upsert(
        ids=[c.id for c in legacy],
        embeddings=vectors,
        documents=[c.text for c in legacy],
        metadatas=[{k: v for k, v in c.metadata.items() if k != "namespace"} for c in legacy],
    )
    # Keys relative to a root one level up differ from the 0.1 keys: they must move.
    root = tmp_path.parent
    calls: list[int] = []
    real = emb.embed
    try:
        emb.embed = lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw)
        stats = index_paths([corpus], cfg, embedder=emb, root=root)
    finally:
        del emb.embed
    assert calls == [] and stats.embedded == 0 and stats.migrated == len(legacy)
    expected = {c.id: c for c in plan_corpus([corpus], cfg.index, root=root)}
    got = col.get(include=["embeddings", "metadatas"])
    assert set(got["ids"]) == set(expected)
    by_text = {c.text: v for c, v in zip(legacy, vectors)}
    for id_, vec, meta in zip(got["ids"], got["embeddings"], got["metadatas"]):
        assert meta["namespace"] == "" and meta["source"] == expected[id_].source
        assert vec == pytest.approx(by_text[expected[id_].text], abs=1e-6)


def test_chunks_of_many_files_share_batches(tmp_path, model_dirs, embedder_factory):
    emb = embedder_factory("llama")
    cfg = cfg_for(tmp_path, model_dirs)
    corpus = write_messy_corpus(tmp_path, good=12)
    calls: list[int] = []
    real = emb.embed
    try:
        emb.embed = lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw)
        stats = index_paths([corpus], cfg, embedder=emb, batch_size=8)
    finally:
        del emb.embed
    assert sum(calls) == stats.embedded == stats.chunks > 8
    assert all(n == 8 for n in calls[:-1])  # full batches across file boundaries


def test_unchanged_reindex_does_not_load_the_model(
    tmp_path, model_dirs, embedder_factory, monkeypatch
):
    import promptembed.ingest.pipeline as indexing

    corpus = write_corpus(tmp_path)
    cfg = cfg_for(tmp_path, model_dirs)
    index_paths([corpus], cfg, embedder=embedder_factory("llama"))

    def no_loading(config):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(indexing, "shared_embedder", no_loading)
    stats = index_paths([corpus], cfg)
    assert not stats.model_loaded and stats.embedded == 0 and stats.unchanged_files == 3
    # Another embedder is still refused without loading anything.
    other = load_config(
        {**cfg.model_dump(), "embedder": {**cfg.embedder.model_dump(), "template": "eol"}}
    )
    from promptembed.store.guard import EmbedderConflictError

    with pytest.raises(EmbedderConflictError):
        index_paths([corpus], other)


@pytest.mark.parametrize(
    "fail_at",
    [("upsert_chunks", 0), ("upsert_chunks", 2), ("delete_chunks", 0), ("delete_chunks", 1)],
)
def test_a_run_broken_anywhere_resumes_to_exactly_the_corpus(
    tmp_path, model_dirs, embedder_factory, monkeypatch, fail_at
):
    import promptembed.ingest.pipeline as indexing

    emb = embedder_factory("llama")
    cfg = cfg_for(tmp_path, model_dirs)
    corpus = write_corpus(tmp_path)
    (corpus / "bees.md").write_text("# Bees\n\nAn old note about bees.", encoding="utf-8")
    (corpus / "bread.txt").write_text("An old bread note.", encoding="utf-8")
    index_paths([corpus], cfg, embedder=emb)
    for name, text in [("bees.md", "# Bees\n\nBees dance. " * 12), ("bread.txt", "Bake it. " * 20)]:
        (corpus / name).write_text(text, encoding="utf-8")
    (corpus / "new.txt").write_text("A new file. " * 15, encoding="utf-8")
    (corpus / "latin1.txt").write_bytes("Un café très chaud. ".encode("latin-1") * 10)
    (corpus / "random.txt").write_bytes(bytes(range(256)) * 8)  # skipped, every run
    (corpus / "empty.md").write_text("", encoding="utf-8")

    name, after = fail_at
    real = getattr(indexing, name)
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(indexing, name, broken)
    with pytest.raises(RuntimeError, match="killed"):
        index_paths([corpus], cfg, embedder=emb, batch_size=2)
    monkeypatch.setattr(indexing, name, real)
    expected = {c.id: c for c in plan_corpus([corpus], cfg.index, root=tmp_path)}
    assert set(stored(tmp_path)) != set(expected)
    index_paths([corpus], cfg, embedder=emb, batch_size=2)
    final = stored(tmp_path)
    assert set(final) == set(expected)
    assert all(final[i]["text"] == c.text for i, c in expected.items())
