"""Hybrid retrieval over a real embedded Chroma: one ranking for every face, crash-safe sync."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

import chromadb

from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.retrieval import HybridRetriever, LexicalIndex, lexical_folder, retrieve
from tests.helpers import index_killed_at, store_config, write_corpus

HYBRID = {"mode": "hybrid", "weights": {"dense": 0.3, "bm25": 0.7}, "candidates": 10}


def hybrid_cfg(tmp_path, model_dirs):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    return load_config(
        {**cfg, "index": {"chunk_size": 32, "chunk_overlap": 0}, "retrieval": HYBRID}
    )


def chroma_ids(tmp_path) -> set[str]:
    col = chromadb.PersistentClient(str(tmp_path / "db")).get_collection("docs")
    return set(col.get(include=[])["ids"])


def lexical_ids(cfg) -> set[str]:
    return set(LexicalIndex.load(lexical_folder(cfg)).ids)


@pytest.fixture
def indexed(tmp_path, model_dirs, embedder_factory):
    cfg = hybrid_cfg(tmp_path, model_dirs)
    index_paths([write_corpus(tmp_path)], cfg, embedder=embedder_factory("llama"))
    return cfg


def test_index_writes_the_lexical_side_with_the_same_ids(indexed, tmp_path):
    assert lexical_folder(indexed).is_dir()
    assert lexical_ids(indexed) == chroma_ids(tmp_path) != set()


def test_chinese_query_finds_the_chinese_chunk_lexically(indexed):
    hits = HybridRetriever(indexed).channels("绿茶的水温", 5)["bm25"]
    assert hits
    assert retrieve(indexed, "绿茶的水温", k=1)[0].source.endswith("tea.md")


def test_langchain_retriever_returns_the_core_ranking(indexed):
    from promptembed.langchain import open_retriever

    core = retrieve(indexed, "where are the flowers", k=4)
    docs = open_retriever(indexed, k=4).invoke("where are the flowers")
    assert [d.id for d in docs] == [h.id for h in core]
    assert [d.metadata["score"] for d in docs] == [h.score for h in core]
    assert [d.page_content for d in docs] == [h.text for h in core]


def test_llama_index_retriever_returns_the_core_ranking(indexed):
    from promptembed.llama_index import open_retriever

    core = retrieve(indexed, "preheat the oven", k=4)
    nodes = open_retriever(indexed, k=4).retrieve("preheat the oven")
    assert [n.node.node_id for n in nodes] == [h.id for h in core]
    assert [n.score for n in nodes] == [h.score for h in core]


def test_hybrid_ranking_is_the_fusion_of_its_channels(indexed):
    from promptembed.retrieval import fuse

    retriever = HybridRetriever(indexed)
    channels = retriever.channels("bee dance", 10)
    expected = fuse(channels, weights=HYBRID["weights"], k=3)
    assert [(h.id, h.score) for h in retriever.search("bee dance", 3)] == expected


def test_stale_lexical_side_is_rebuilt_before_serving(indexed, tmp_path):
    col = chromadb.PersistentClient(str(tmp_path / "db")).get_collection("docs")
    victim = sorted(chroma_ids(tmp_path))[0]
    col.delete(ids=[victim])  # another process changed the collection behind our back
    assert victim in lexical_ids(indexed)
    retriever = HybridRetriever(indexed)
    assert victim not in {i for i, _ in retriever.channels("bees bread tea 绿茶", 50)["bm25"]}
    assert lexical_ids(indexed) == chroma_ids(tmp_path)


@pytest.mark.procs
@pytest.mark.parametrize(
    ("target", "method", "after"),
    [("Collection", "upsert", 1), ("Collection", "delete", 0), ("lexical.os", "replace", 0)],
    ids=["mid-upserts", "before-stale-delete", "while-saving-lexical"],
)
def test_kill_leaves_both_sides_with_the_same_ids_after_a_rerun(
    tmp_path, model_dirs, embedder_factory, target, method, after
):
    corpus = write_corpus(tmp_path)
    (tmp_path / "fresh").mkdir()
    cfg = hybrid_cfg(tmp_path, model_dirs)
    emb = embedder_factory("llama")
    (corpus / "bees.md").write_text("# Bees\n\nAn old note about bees.", encoding="utf-8")
    index_paths([corpus], cfg, embedder=emb)
    before = chroma_ids(tmp_path)
    fresh = write_corpus(tmp_path / "fresh")  # the new contents: several changed chunks
    (corpus / "bees.md").write_text((fresh / "bees.md").read_text("utf-8"), "utf-8")
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\npath = "{(tmp_path / "db").as_posix()}"\ncollection = "docs"\n'
        '[index]\nchunk_size = 32\nchunk_overlap = 0\n[retrieval]\nmode = "hybrid"\n'
        "weights = { dense = 0.3, bm25 = 0.7 }\ncandidates = 10\n",
        encoding="utf-8",
    )
    killed = index_killed_at(toml, corpus, method, after, target=target)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert chroma_ids(tmp_path) != before or method == "replace"  # the run was cut short

    # Not served while mismatched: opening a retriever repairs the lexical side first.
    HybridRetriever(cfg, emb)
    assert lexical_ids(cfg) == chroma_ids(tmp_path)
    # And the next indexing run leaves both sides complete and equal.
    index_paths([corpus], cfg, embedder=emb)
    assert lexical_ids(cfg) == chroma_ids(tmp_path) != before


def test_cli_query_uses_the_configured_mode(indexed, tmp_path, model_dirs):
    import json

    from typer.testing import CliRunner

    from promptembed.cli import app

    toml = tmp_path / "hybrid.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\npath = "{(tmp_path / "db").as_posix()}"\ncollection = "docs"\n'
        '[retrieval]\nmode = "hybrid"\nweights = { dense = 0.3, bm25 = 0.7 }\ncandidates = 10\n',
        encoding="utf-8",
    )
    out = CliRunner().invoke(
        app, ["query", "绿茶的水温", "-k", "3", "--config", str(toml), "--json"]
    )
    assert out.exit_code == 0, out.output
    got = [json.loads(line)["id"] for line in out.stdout.splitlines()]
    assert got == [h.id for h in retrieve(indexed, "绿茶的水温", k=3)]


def test_open_retrievers_are_shared_while_held_and_freed_with_the_last_holder(indexed):
    import gc
    import weakref

    from promptembed.retrieval import open_retriever

    first = open_retriever(indexed)
    assert open_retriever(load_config(indexed.model_dump())) is first  # an equal config
    fewer = indexed.retrieval.model_copy(update={"candidates": 11})
    other = open_retriever(indexed.model_copy(update={"retrieval": fewer}))
    assert other is not first  # configs that differ in any field never share
    hits = [(h.id, h.score) for h in first.search("bee dance", 3)]

    gone, model = weakref.ref(first), weakref.ref(first.embedder)
    del first, other
    gc.collect()
    assert gone() is None and model() is None  # the retriever and its model are freed
    # Nothing holds one now: each call opens (and frees) one, with the same answers.
    for _ in range(2):
        assert [(h.id, h.score) for h in retrieve(indexed, "bee dance", 3)] == hits


def test_framework_retrievers_hold_their_core_retriever(indexed):
    import gc
    import weakref

    from promptembed.llama_index import open_retriever as llama_retriever
    from promptembed.retrieval import hybrid

    adapters = [llama_retriever(indexed, k=2)]
    try:
        from promptembed.langchain import open_retriever as langchain_retriever
    except ImportError:
        pass
    else:
        adapters.append(langchain_retriever(indexed, k=2))
    core = weakref.ref(adapters[0].core())
    gc.collect()
    assert core() is not None and all(a.core() is core() for a in adapters)
    assert hybrid.open_retriever(indexed) is core()  # and share it with the core's callers
    del adapters
    gc.collect()
    assert core() is None
