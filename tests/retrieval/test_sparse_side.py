"""The sparse (PromptReps) side of a store: equal to a plain recomputation, incremental,
kill-safe, tied to the collection's vectors, and one ranking on every face."""

from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")
pytest.importorskip("bm25s")

import chromadb

from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.retrieval import HybridRetriever, SparseIndex, fuse, retrieve
from promptembed.retrieval.hybrid import sparse_path
from promptembed.retrieval.sparse_side import sync_sparse
from tests.helpers import index_killed_at, store_config, write_corpus

THREE = {
    "mode": "hybrid",
    "channels": ["dense", "sparse", "bm25"],
    "weights": {"dense": 0.2, "sparse": 0.3, "bm25": 0.5},
    "candidates": 10,
}


def three_cfg(tmp_path, model_dirs):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    return load_config({**cfg, "index": {"chunk_size": 32, "chunk_overlap": 0}, "retrieval": THREE})


def collection(tmp_path):
    return chromadb.PersistentClient(str(tmp_path / "db")).get_collection("docs")


def stored(tmp_path) -> dict[str, str]:
    got = collection(tmp_path).get(include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


class Counting:
    """``embed_sparse`` of a real embedder, recording every text it is asked to embed."""

    def __init__(self, embedder, fail_on_call: int | None = None):
        self.embed = embedder.embed_sparse  # bound now: a test may then replace the attribute
        self.texts, self.calls, self.fail_on_call = [], 0, fail_on_call

    def __call__(self, texts):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("interrupted mid-sync")
        self.texts += list(texts)
        return self.embed(texts)


@pytest.fixture
def indexed(tmp_path, model_dirs, embedder_factory):
    cfg = three_cfg(tmp_path, model_dirs)
    index_paths([write_corpus(tmp_path)], cfg, embedder=embedder_factory("llama"))
    return cfg


def test_index_writes_every_chunks_row_equal_to_a_plain_recomputation(
    indexed, tmp_path, embedder_factory
):
    side = SparseIndex.load(sparse_path(indexed))
    docs = stored(tmp_path)
    assert set(side.ids) == set(docs) != set()
    plain = embedder_factory("llama").embed_sparse([docs[i] for i in side.ids])
    assert side.matrix.shape == plain.shape
    np.testing.assert_allclose(side.matrix.toarray(), plain.toarray(), rtol=1e-5, atol=1e-6)


def test_a_second_sync_embeds_nothing(indexed, tmp_path, embedder_factory):
    embed = Counting(embedder_factory("llama"))
    before = SparseIndex.load(sparse_path(indexed))
    after = sync_sparse(collection(tmp_path), sparse_path(indexed), embed)
    assert embed.texts == []
    assert after.ids == before.ids
    assert (after.matrix != before.matrix).nnz == 0


def test_only_changed_and_new_chunks_are_embedded_and_deleted_ones_dropped(
    indexed, tmp_path, embedder_factory
):
    col = collection(tmp_path)
    ids = sorted(stored(tmp_path))
    changed, deleted = ids[0], ids[1]
    col.update(ids=[changed], documents=["Honey bees make honey from nectar."])
    col.delete(ids=[deleted])
    col.add(
        ids=["new"],
        documents=["绿茶用八十度的水泡。"],
        embeddings=col.get(ids=[ids[2]], include=["embeddings"])["embeddings"],
    )
    embed = Counting(embedder_factory("llama"))
    side = sync_sparse(col, sparse_path(indexed), embed)
    assert sorted(embed.texts) == sorted(
        ["Honey bees make honey from nectar.", "绿茶用八十度的水泡。"]
    )
    assert set(side.ids) == set(stored(tmp_path)) and deleted not in side.ids
    row = side.matrix[side.ids.index(changed)].toarray()
    plain = embedder_factory("llama").embed_sparse(["Honey bees make honey from nectar."])
    np.testing.assert_allclose(row, plain.toarray(), rtol=1e-5, atol=1e-6)


def test_an_interrupted_sync_keeps_its_checkpoints_and_the_next_goes_on(
    indexed, tmp_path, embedder_factory
):
    path = sparse_path(indexed)
    path.unlink()  # as if the sparse channel was just turned on for this store
    total = len(stored(tmp_path))
    assert total > 4
    broken = Counting(embedder_factory("llama"), fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        sync_sparse(collection(tmp_path), path, broken, batch_size=2, checkpoint_seconds=0)
    assert len(SparseIndex.load(path)) == 4  # two batches were saved before the interrupt
    embed = Counting(embedder_factory("llama"))
    side = sync_sparse(collection(tmp_path), path, embed, batch_size=2)
    assert len(embed.texts) == total - 4
    assert set(side.ids) == set(stored(tmp_path))


def test_a_side_made_for_other_vectors_is_rebuilt_not_mixed_in(indexed, tmp_path, embedder_factory):
    path = sparse_path(indexed)
    old = SparseIndex.load(path)
    SparseIndex(old.ids, old.matrix * 7, digests=old.digests, key="another-embedder").save(path)
    embed = Counting(embedder_factory("llama"))
    side = sync_sparse(collection(tmp_path), path, embed)
    assert len(embed.texts) == len(old.ids)
    np.testing.assert_allclose(side.matrix.toarray(), old.matrix.toarray(), rtol=1e-5, atol=1e-6)


def test_three_channel_ranking_is_the_fusion_of_its_channels(indexed, embedder_factory):
    retriever = HybridRetriever(indexed, embedder_factory("llama"))
    channels = retriever.channels("bee dance flowers", 10)
    assert set(channels) == {"dense", "sparse", "bm25"} and channels["sparse"]
    expected = fuse(channels, weights=THREE["weights"], k=3)
    assert [(h.id, h.score) for h in retriever.search("bee dance flowers", 3)] == expected


def test_sparse_channel_equals_the_evaluation_harness_on_the_same_chunks(
    indexed, tmp_path, embedder_factory
):
    from promptembed.evaluation.retrieval import corpus_channels

    emb = embedder_factory("llama")
    docs = stored(tmp_path)
    query = "where do bees find nectar"
    evaluated = corpus_channels(emb, docs, {"q": query}, indexed.retrieval)["sparse"][0]
    served = HybridRetriever(indexed, emb).channels(query, 10)["sparse"]
    assert [i for i, _ in served] == [i for i, _ in evaluated]
    np.testing.assert_allclose([s for _, s in served], [s for _, s in evaluated], rtol=1e-5)


def test_retriever_resyncs_the_sparse_side_when_the_collection_changes(
    indexed, tmp_path, embedder_factory
):
    retriever = HybridRetriever(indexed, embedder_factory("llama"))
    col = collection(tmp_path)
    victim = retriever.channels("bee dance", 10)["sparse"][0][0]
    col.delete(ids=[victim])  # another process deletes the best sparse hit
    assert victim not in [i for i, _ in retriever.channels("bee dance", 10)["sparse"]]
    assert [h.id for h in retrieve(indexed, "bee dance", 3)] != [] and victim not in [
        h.id for h in retrieve(indexed, "bee dance", 10)
    ]


@pytest.mark.procs
def test_kill_mid_sparse_sync_then_open_embeds_only_the_rest(
    tmp_path, model_dirs, embedder_factory, monkeypatch
):
    corpus = write_corpus(tmp_path)
    cfg = three_cfg(tmp_path, model_dirs)
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\npath = "{(tmp_path / "db").as_posix()}"\ncollection = "docs"\n'
        '[index]\nchunk_size = 32\nchunk_overlap = 0\n[retrieval]\nmode = "hybrid"\n'
        'channels = ["dense", "sparse", "bm25"]\ncandidates = 10\n'
        "weights = { dense = 0.2, sparse = 0.3, bm25 = 0.5 }\n",
        encoding="utf-8",
    )
    setup = "sparse_side.BATCH_SIZE = 2\nsparse_side.CHECKPOINT_SECONDS = 0"
    killed = index_killed_at(toml, corpus, "_save", 2, target="sparse_side", setup=setup)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    total = len(stored(tmp_path))
    assert len(SparseIndex.load(sparse_path(cfg))) == 4  # two checkpoints survived the kill

    emb = embedder_factory("llama")
    embed = Counting(emb)
    monkeypatch.setattr(emb, "embed_sparse", embed)  # what the retriever repairs with
    HybridRetriever(cfg, emb)
    assert len(embed.texts) == total - 4
    assert set(SparseIndex.load(sparse_path(cfg)).ids) == set(stored(tmp_path))


def test_client_mode_with_the_sparse_channel_is_refused_in_the_config():
    with pytest.raises(ValueError, match=r"sparse.*need the model in this process.*server"):
        load_config({"embedder": {"server": "http://127.0.0.1:8000"}, "retrieval": THREE})
    with pytest.raises(ValueError, match=r"rerank.*need the model in this process"):
        load_config({"embedder": {"server": "http://127.0.0.1:8000"}, "retrieval": {"rerank": {}}})
