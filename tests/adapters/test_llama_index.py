"""LlamaIndex adapter: BaseEmbedding contract, batching, serialisation, retrieval."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from promptembed.llama_index import PromptEmbedding, open_index
from promptembed.store.guard import EmbedderConflictError
from tests.helpers import DOCS, store_config


@pytest.fixture(scope="module")
def params(model_dirs) -> dict:
    return {"model": str(model_dirs["llama"]), "device": "cpu"}


def test_contract_and_values(params, embedder_factory):
    core = embedder_factory("llama", template="ke", query_template="eol")
    emb = PromptEmbedding(**params, template="ke", query_template="eol")
    assert PromptEmbedding.class_name() == "PromptEmbedding"
    assert emb.model_name == params["model"]
    assert "_embedder" not in emb.model_dump()
    texts = emb.get_text_embedding_batch(DOCS)
    np.testing.assert_allclose(texts, core.embed(DOCS), atol=1e-6)
    assert all(type(x) is float for x in texts[0])
    np.testing.assert_allclose(emb.get_text_embedding(DOCS[0]), texts[0], atol=1e-6)
    np.testing.assert_allclose(
        emb.get_query_embedding(DOCS[0]), core.embed_query(DOCS[0]), atol=1e-6
    )


def test_embed_batch_size_is_respected(params, monkeypatch):
    emb = PromptEmbedding(**params, embed_batch_size=2)
    sizes: list[int] = []
    real = emb.embedder.embed

    def spy(texts, **kwargs):
        sizes.append(len(texts) if isinstance(texts, list) else 1)
        return real(texts, **kwargs)

    monkeypatch.setattr(emb.embedder, "embed", spy)
    assert len(emb.get_text_embedding_batch(DOCS)) == len(DOCS)
    assert sizes == [2, 2, 1]


async def test_async_variants(params):
    emb = PromptEmbedding(**params)
    q = await emb.aget_query_embedding("hello")
    t = await emb.aget_text_embedding("hello")
    batch = await emb.aget_text_embedding_batch(DOCS)
    np.testing.assert_allclose(q, emb.get_query_embedding("hello"), atol=1e-6)
    np.testing.assert_allclose(t, emb.get_text_embedding("hello"), atol=1e-6)
    assert len(batch) == len(DOCS)


def test_to_dict_round_trip_without_remote_code(params):
    emb = PromptEmbedding(**params, template="cot", embed_batch_size=7, trust_remote_code=True)
    data = emb.to_dict()
    assert data["class_name"] == "PromptEmbedding"
    assert "trust_remote_code" not in data["config"]
    again = PromptEmbedding.from_dict(data)
    assert again.config.template == "cot" and again.embed_batch_size == 7
    assert again.config.trust_remote_code is False
    assert PromptEmbedding.from_json(emb.to_json()).config == again.config


def test_index_retrieval_and_conflict(tmp_path, model_dirs, embedder_factory):
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    index = open_index(cfg, embedder=embedder_factory("llama"))
    assert isinstance(index, VectorStoreIndex)
    assert isinstance(index.storage_context.vector_store, ChromaVectorStore)
    for i, text in enumerate(DOCS):
        index.insert(Document(text=text, metadata={"source": f"s{i}"}))
    retriever = index.as_retriever(similarity_top_k=3)
    for i in (0, 3):
        assert retriever.retrieve(DOCS[i])[0].node.metadata["source"] == f"s{i}"
    with pytest.raises(EmbedderConflictError):
        open_index(store_config(model_dirs["llama"], tmp_path / "db", template="eol"))


def test_lone_surrogate_is_refused_naming_its_index(params):
    emb = PromptEmbedding(**params)
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        emb.get_text_embedding_batch(["fine", "\ud800"])
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        emb.get_query_embedding("query \udc00")
