"""Collections in a store: a query never creates one, a held store lock fails clearly."""

from __future__ import annotations

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")
import chromadb

from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.store.reading import query
from tests.helpers import store_config, write_corpus

SMALL_CHUNKS = {"chunk_size": 32, "chunk_overlap": 0}


def cfg_for(tmp_path, model_dirs, **index):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    return load_config({**cfg, "index": {**SMALL_CHUNKS, **index}})


def test_query_on_a_missing_collection_creates_nothing(tmp_path, model_dirs, embedder_factory):
    from promptembed.store.collections import CollectionNotFoundError

    cfg = cfg_for(tmp_path, model_dirs)
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    before = [c.name for c in client.list_collections()]
    with pytest.raises(CollectionNotFoundError, match=r"'docs' does not exist.*promptembed index"):
        query("bees", cfg, embedder=embedder_factory("llama"))
    assert [c.name for c in client.list_collections()] == before == []


def test_a_held_store_lock_fails_clearly(tmp_path, model_dirs, embedder_factory):
    from filelock import FileLock

    from promptembed.store.collections import LOCK_NAME, StoreBusyError, store_lock

    cfg = cfg_for(tmp_path, model_dirs)
    corpus = write_corpus(tmp_path)
    (tmp_path / "db").mkdir()
    with (
        FileLock(str(tmp_path / "db" / LOCK_NAME)),
        pytest.raises(StoreBusyError, match="chroma run"),
        store_lock(cfg.store, timeout=0.1),
    ):
        pass
    stats = index_paths([corpus], cfg, embedder=embedder_factory("llama"))  # released: works
    assert stats.embedded == stats.chunks > 0
