"""LangChain adapter: the standard embeddings tests, async, and Chroma retrieval."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from promptembed.langchain import PromptEmbeddings, open_vectorstore
from promptembed.store.guard import EmbedderConflictError
from tests.helpers import DOCS, store_config


@pytest.fixture(scope="module")
def tiny_params(model_dirs) -> dict:
    return {"model": str(model_dirs["llama"]), "device": "cpu"}


class _Params:
    @pytest.fixture(autouse=True)
    def _params(self, tiny_params):
        self._tiny = tiny_params

    @property
    def embeddings_class(self) -> type[PromptEmbeddings]:
        return PromptEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return self._tiny


class TestPromptEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    pass


class TestPromptEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass


def test_kwargs_and_config_build_the_same(tiny_params, embedder_factory):
    from promptembed import load_config

    a = PromptEmbeddings(**tiny_params, template="eol")
    b = PromptEmbeddings.from_config({"embedder": {**tiny_params, "template": "eol"}})
    assert a.config == b.config and a.config.template == "eol"
    with pytest.raises(TypeError):
        PromptEmbeddings(config=a.config, template="ke")
    with pytest.raises(ValueError):
        PromptEmbeddings(**tiny_params, template="no placeholder")
    assert load_config({"embedder": tiny_params}).embedder == PromptEmbeddings(**tiny_params).config


def test_values_match_core_and_are_python_floats(tiny_params, embedder_factory):
    core = embedder_factory("llama", template="ke", query_template="eol")
    emb = PromptEmbeddings(**tiny_params, template="ke", query_template="eol")
    docs = emb.embed_documents(DOCS)
    assert isinstance(docs, list) and all(type(x) is float for row in docs for x in row)
    np.testing.assert_allclose(docs, core.embed(DOCS), atol=1e-6)
    query = emb.embed_query(DOCS[0])
    np.testing.assert_allclose(query, core.embed_query(DOCS[0]), atol=1e-6)
    assert not np.allclose(query, docs[0])  # queries take the query template


async def test_async_does_not_block_the_loop(tiny_params, monkeypatch):
    emb = PromptEmbeddings(**tiny_params)
    real = emb.embedder.embed

    def slow(*args, **kwargs):
        time.sleep(0.4)
        return real(*args, **kwargs)

    monkeypatch.setattr(emb.embedder, "embed", slow)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    vectors, query = await asyncio.gather(emb.aembed_documents(DOCS), emb.aembed_query("hi"))
    task.cancel()
    assert len(vectors) == len(DOCS) and len(query) == emb.embedder.dimension
    assert ticks >= 10  # the loop kept running while the two embeds slept in threads


def test_concurrent_threads_agree(tiny_params):
    emb = PromptEmbeddings(**tiny_params)
    expected = emb.embed_documents(DOCS)
    results: list = [None] * 6
    errors: list = []

    def work(i):
        try:
            results[i] = emb.embed_documents(DOCS)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-6)


def test_vectorstore_retrieval_and_conflict(tmp_path, model_dirs, embedder_factory):
    from langchain_chroma import Chroma

    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    store = open_vectorstore(cfg, embedder=embedder_factory("llama"))
    assert isinstance(store, Chroma)
    store.add_texts(DOCS, metadatas=[{"source": f"s{i}"} for i in range(len(DOCS))])
    for i in (1, 4):
        hits = store.similarity_search_with_score(DOCS[i], k=3)
        assert hits[0][0].metadata["source"] == f"s{i}"
    # the collection is registered for reopening without the function
    assert store._collection.configuration_json["embedding_function"]["name"] == "promptembed"
    with pytest.raises(EmbedderConflictError):
        open_vectorstore(store_config(model_dirs["gpt2"], tmp_path / "db"))


def test_lone_surrogate_is_refused_naming_its_index(tiny_params):
    emb = PromptEmbeddings(**tiny_params)
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        emb.embed_documents(["fine", "\ud800"])
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        emb.embed_query("query \udc00")
