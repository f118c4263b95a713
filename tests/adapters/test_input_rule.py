"""One input rule on every face: many texts refuse a bare str, one text refuses a list.

Through the adapters' own methods and through what ``open_vectorstore``, ``open_index``
and ``open_collection`` return; a refused call writes nothing.
"""

from __future__ import annotations

import asyncio

import pytest

chromadb = pytest.importorskip("chromadb")
pytest.importorskip("langchain_chroma")
pytest.importorskip("llama_index.vector_stores.chroma")

from promptembed.chroma import open_collection  # noqa: E402
from promptembed.langchain import PromptEmbeddings, open_vectorstore  # noqa: E402
from promptembed.llama_index import PromptEmbedding, open_index  # noqa: E402
from promptembed.store.function import PromptEmbeddingFunction  # noqa: E402
from tests.helpers import DOCS, store_config  # noqa: E402

WRAP = "wrap it in a list"
BATCH = "use the batch method"


@pytest.fixture(scope="module")
def ke(embedder_factory):
    return embedder_factory("llama")


def _many_text_calls(ke):
    lc, li = PromptEmbeddings.from_embedder(ke), PromptEmbedding.from_embedder(ke)
    ef = PromptEmbeddingFunction(embedder=ke)
    return {
        "lc.embed_documents": lc.embed_documents,
        "lc.aembed_documents": lambda t: asyncio.run(lc.aembed_documents(t)),
        "li.get_text_embedding_batch": li.get_text_embedding_batch,
        "li.aget_text_embedding_batch": lambda t: asyncio.run(li.aget_text_embedding_batch(t)),
        "li._get_text_embeddings": li._get_text_embeddings,
        "li._aget_text_embeddings": lambda t: asyncio.run(li._aget_text_embeddings(t)),
        "chroma.__call__": ef,
        "chroma.embed_query": ef.embed_query,
    }


def _one_text_calls(ke):
    lc, li = PromptEmbeddings.from_embedder(ke), PromptEmbedding.from_embedder(ke)
    return {
        "lc.embed_query": lc.embed_query,
        "lc.aembed_query": lambda t: asyncio.run(lc.aembed_query(t)),
        "li.get_query_embedding": li.get_query_embedding,
        "li.aget_query_embedding": lambda t: asyncio.run(li.aget_query_embedding(t)),
        "li.get_text_embedding": li.get_text_embedding,
        "li.aget_text_embedding": lambda t: asyncio.run(li.aget_text_embedding(t)),
        "li._get_query_embedding": li._get_query_embedding,
        "li._get_text_embedding": li._get_text_embedding,
        "li._aget_query_embedding": lambda t: asyncio.run(li._aget_query_embedding(t)),
        "li._aget_text_embedding": lambda t: asyncio.run(li._aget_text_embedding(t)),
    }


def test_every_many_texts_method_refuses_a_bare_str(ke):
    for name, call in _many_text_calls(ke).items():
        with pytest.raises(TypeError, match=WRAP):
            call("hello")
        assert len(call(["hello"])) == 1, name


def test_every_one_text_method_refuses_a_list(ke):
    for name, call in _one_text_calls(ke).items():
        for bad in (["a", "b"], ("a",)):
            with pytest.raises(TypeError, match=BATCH):
                call(bad)
        assert len(call("hello")) == ke.dimension, name


def test_llama_index_query_list_is_a_clear_type_error_not_a_validation_error(ke):
    # Before: pydantic ValidationError from LlamaIndex's event, after embedding both.
    with pytest.raises(TypeError, match=BATCH):
        PromptEmbedding.from_embedder(ke).get_query_embedding(["a", "b"])


def _cfg(tmp_path, ke):
    cfg = store_config(tmp_path / "unused", tmp_path / "db")
    cfg["embedder"]["model"] = ke.config.model
    return cfg


def test_open_vectorstore_add_texts_refuses_a_bare_str_writing_nothing(tmp_path, ke):
    store = open_vectorstore(_cfg(tmp_path, ke), embedder=ke)
    store.add_texts(DOCS[:2])
    before = store._collection.count()
    for call in (store.add_texts, lambda t: asyncio.run(store.aadd_texts(t))):
        with pytest.raises(TypeError, match=WRAP):
            call("hello")
        assert store._collection.count() == before  # not five one-letter documents
    with pytest.raises(TypeError, match=BATCH):
        store.similarity_search(["a", "b"])
    store.add_texts(iter(["from a generator"]))
    assert store._collection.count() == before + 1


def test_open_index_and_open_collection_apply_the_rule(tmp_path, ke):
    index = open_index(_cfg(tmp_path, ke), embedder=ke)
    embed = index._embed_model
    with pytest.raises(TypeError, match=WRAP):
        embed.get_text_embedding_batch("hello")
    with pytest.raises(TypeError, match=BATCH):
        embed.get_query_embedding(["a", "b"])
    col = open_collection(_cfg(tmp_path, ke), embedder=ke)
    with pytest.raises(TypeError, match=WRAP):
        col._embedding_function("hello")
    col.add(ids=["one"], documents="hello")  # Chroma itself wraps one document: one record
    assert col.count() == 1
