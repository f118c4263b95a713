"""Chroma adapter: the registered embedding function, reopening, server mode, sharing.

The conflict rule itself (refusals, reopening) is tested in ``tests/store/test_guard.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

from promptembed.chroma import open_collection  # noqa: E402
from promptembed.config import EmbedderConfig  # noqa: E402
from promptembed.store.function import PromptEmbeddingFunction  # noqa: E402
from promptembed.store.guard import EmbedderConflictError  # noqa: E402
from tests.helpers import DOCS, run_python, store_config  # noqa: E402


@pytest.fixture(scope="module")
def llama_embedder(embedder_factory):
    return embedder_factory("llama")


def test_protocol_and_config_round_trip(llama_embedder):
    from chromadb.utils.embedding_functions import known_embedding_functions

    ef = PromptEmbeddingFunction(embedder=llama_embedder)
    assert known_embedding_functions["promptembed"] is PromptEmbeddingFunction
    assert ef.name() == "promptembed"
    assert ef.default_space() == "cosine"
    assert "cosine" in ef.supported_spaces()
    assert not ef.is_legacy()
    docs = ef(DOCS)
    assert len(docs) == len(DOCS) and docs[0].shape == (llama_embedder.dimension,)
    np.testing.assert_allclose(docs, llama_embedder.embed(DOCS), atol=1e-6)
    np.testing.assert_allclose(ef.embed_query(DOCS[:1])[0], llama_embedder.embed_query(DOCS[0]))
    config = ef.get_config()
    json.dumps(config)  # what Chroma persists must be JSON
    assert config["dimension"] == llama_embedder.dimension
    rebuilt = PromptEmbeddingFunction.build_from_config(config)
    assert rebuilt.config == llama_embedder.config


def test_stored_config_never_enables_remote_code(model_dirs):
    ef = PromptEmbeddingFunction(str(model_dirs["llama"]), device="cpu", trust_remote_code=True)
    assert "trust_remote_code" not in ef.get_config()["embedder"]
    tampered = {"embedder": {**ef.get_config()["embedder"], "trust_remote_code": True}}
    assert PromptEmbeddingFunction.build_from_config(tampered).config.trust_remote_code is False


def test_query_template_routes_queries(model_dirs):
    ef = PromptEmbeddingFunction(
        str(model_dirs["llama"]), device="cpu", template="ke", query_template="eol"
    )
    doc, query = ef(["same text"])[0], ef.embed_query(["same text"])[0]
    assert not np.allclose(doc, query)


def test_validate_config_update_refuses_identity_changes(llama_embedder):
    ef = PromptEmbeddingFunction(embedder=llama_embedder)
    old = ef.get_config()
    ef.validate_config_update(old, {"embedder": {**old["embedder"], "batch_size": 8}})
    with pytest.raises(ValueError, match="template"):
        ef.validate_config_update(old, {"embedder": {**old["embedder"], "template": "eol"}})


@pytest.mark.procs
def test_end_to_end_and_reopen_in_new_process(tmp_path, model_dirs, llama_embedder):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    col = open_collection(cfg, embedder=llama_embedder)
    col.add(ids=[f"d{i}" for i in range(len(DOCS))], documents=DOCS)
    here = col.query(query_texts=[DOCS[1], DOCS[3]], n_results=3)
    assert [ids[0] for ids in here["ids"]] == ["d1", "d3"]  # exact duplicates rank first
    assert col.configuration_json["hnsw"]["space"] == "cosine"

    code = f"""
import json, chromadb, promptembed.chroma
client = chromadb.PersistentClient({str(tmp_path / "db")!r})
col = client.get_collection("docs")  # no embedding function passed
res = col.query(query_texts={[DOCS[1], DOCS[3]]!r}, n_results=3)
ef = col.configuration["embedding_function"]
print(json.dumps({{"ids": res["ids"], "distances": res["distances"],
                   "ef": type(ef).__name__, "trc": ef.config.trust_remote_code}}))
"""
    out = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert out["ef"] == "PromptEmbeddingFunction" and out["trc"] is False
    assert out["ids"] == here["ids"]
    np.testing.assert_allclose(out["distances"], here["distances"], atol=1e-5)


@pytest.mark.procs
def test_server_mode(chroma_server, model_dirs, llama_embedder, embedder_factory):
    cfg = {
        "embedder": {"model": str(model_dirs["llama"]), "device": "cpu"},
        "store": {"host": "127.0.0.1", "port": chroma_server, "collection": "docs"},
    }
    col = open_collection(cfg, embedder=llama_embedder)
    col.add(ids=[f"d{i}" for i in range(len(DOCS))], documents=DOCS)
    res = col.query(query_texts=[DOCS[2]], n_results=2)
    assert res["ids"][0][0] == "d2"
    # The server kept the function's config: a fresh client rebuilds it.
    again = chromadb.HttpClient(host="127.0.0.1", port=chroma_server).get_collection("docs")
    assert again.query(query_texts=[DOCS[2]], n_results=2)["ids"] == res["ids"]
    other = embedder_factory("llama", template="eol")
    bad = {**cfg, "embedder": {**cfg["embedder"], "template": "eol"}}
    with pytest.raises(EmbedderConflictError):
        open_collection(bad, embedder=other)
    assert EmbedderConfig.model_validate(cfg["embedder"]).template == "ke"


def test_rebuilt_functions_share_one_model_and_free_it(model_dirs):
    import gc
    import weakref

    from promptembed.registry import _EMBEDDERS

    ef = PromptEmbeddingFunction(str(model_dirs["llama"]), device="cpu", template="sum")
    config = ef.get_config()
    a = PromptEmbeddingFunction.build_from_config(config)
    b = PromptEmbeddingFunction.build_from_config(config)
    a(["load it"]), b(["load it"])
    # Chroma rebuilds the function per collection handle: the weights are loaded once.
    assert a._embedder is b._embedder
    model = weakref.ref(a._embedder)
    del ef, a, b
    gc.collect()
    # ...and freed with the last function that used them.
    assert model() is None and not any(e.config.template == "sum" for e in _EMBEDDERS.values())


def test_lone_surrogate_is_refused_naming_its_index(llama_embedder):
    ef = PromptEmbeddingFunction(embedder=llama_embedder)
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        ef(["fine", "\ud800"])
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        ef.embed_query(["query \udc00"])
