"""The drop-in paths: stores built by the user with promptembed's adapters, real Chroma.

Every path that writes is guarded (refused with nothing written when the collection
holds another embedder's vectors); a drop-in store is adopted by ``open_*`` when its
stored vectors re-embed to themselves; a collection and its config can move.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")
pytest.importorskip("langchain_chroma")
pytest.importorskip("llama_index.vector_stores.chroma")

from _adapters import DOCS, run_python, store_config  # noqa: E402
from promptembed.chroma import PromptEmbeddingFunction, open_collection  # noqa: E402
from promptembed.guard import META_HINT, EmbedderConflictError  # noqa: E402
from promptembed.langchain import PromptEmbeddings, open_vectorstore  # noqa: E402
from promptembed.llama_index import PromptEmbedding, open_index  # noqa: E402


def _langchain(client, name, embedder):
    from langchain_chroma import Chroma

    store = Chroma(name, PromptEmbeddings.from_embedder(embedder), client=client)
    return lambda texts: store.add_texts(texts)


def _llama_index(client, name, embedder):
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection(name))
    index = VectorStoreIndex.from_vector_store(
        store,
        embed_model=PromptEmbedding.from_embedder(embedder),
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    return lambda texts: [index.insert(Document(text=t)) for t in texts]


def _raw_chroma(client, name, embedder):
    ef = PromptEmbeddingFunction(embedder=embedder)
    col = client.get_or_create_collection(name, embedding_function=ef)
    n = col.count()
    return lambda texts: col.add(ids=[f"r{n + i}" for i in range(len(texts))], documents=texts)


WRITERS = {"langchain": _langchain, "llama_index": _llama_index, "chroma": _raw_chroma}


@pytest.fixture(scope="module")
def ke(embedder_factory):
    return embedder_factory("llama")


@pytest.fixture(scope="module")
def eol(embedder_factory):
    return embedder_factory("llama", template="eol")


@pytest.mark.parametrize("path", WRITERS)
def test_second_embedder_is_refused_with_nothing_written(tmp_path, path, ke, eol):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    WRITERS[path](client, "docs", ke)(DOCS[:3])
    before = client.get_collection("docs", embedding_function=None).count()
    assert before == 3
    with pytest.raises(EmbedderConflictError) as info:
        WRITERS[path](client, "docs", eol)(DOCS[3:])
    message = str(info.value)
    assert "template='ke'" in message and "template='eol'" in message  # both embedders
    assert client.get_collection("docs", embedding_function=None).count() == before
    WRITERS[path](client, "docs", ke)(DOCS[3:])  # the same embedder still writes
    assert client.get_collection("docs", embedding_function=None).count() == 5


@pytest.mark.parametrize("path", WRITERS)
def test_drop_in_store_is_adopted_by_open_with_the_same_embedder(tmp_path, path, ke, eol):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        WRITERS[path](client, "docs", ke)(DOCS)
    cfg = store_config(tmp_path.joinpath("unused"), tmp_path / "db")
    cfg["embedder"]["model"] = ke.config.model
    store = open_vectorstore(cfg, embedder=ke)
    assert store.similarity_search(DOCS[1], k=1)[0].page_content == DOCS[1]
    space = client.get_collection("docs", embedding_function=None).configuration_json
    if space["hnsw"]["space"] == "l2":  # LangChain's Chroma made it: named, with the fix
        assert any("l2 distance" in str(w.message) and "cosine" in str(w.message) for w in caught)
    with pytest.raises(EmbedderConflictError):
        open_index({**cfg, "embedder": {**cfg["embedder"], "template": "eol"}}, embedder=eol)
    assert open_collection(cfg, embedder=ke).count() == len(DOCS)


def test_promptembed_made_collections_use_cosine(tmp_path, ke):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    raw = client.create_collection("raw", embedding_function=PromptEmbeddingFunction(embedder=ke))
    cfg = store_config(tmp_path, tmp_path / "db", collection="opened")
    cfg["embedder"]["model"] = ke.config.model
    opened = open_collection(cfg, embedder=ke)
    for col in (raw, opened):
        assert col.configuration_json["hnsw"]["space"] == "cosine"
    assert "import promptembed.chroma" in opened.metadata[META_HINT]


def test_a_str_is_not_split_into_letters(ke):
    ef = PromptEmbeddingFunction(embedder=ke)
    lc = PromptEmbeddings.from_embedder(ke)
    li = PromptEmbedding.from_embedder(ke)
    for call in (lc.embed_documents, li.get_text_embedding_batch, ef):
        for bad in ("abc", b"abc", None):
            with pytest.raises(TypeError):
                call(bad)
    assert len(lc.embed_documents(["abc"])) == 1


@pytest.mark.parametrize("module", ["promptembed.langchain", "promptembed.llama_index"])
def test_importing_any_adapter_registers_the_chroma_function(module):
    code = f"""
import {module}
from chromadb.utils.embedding_functions import known_embedding_functions
print("promptembed" in known_embedding_functions)
"""
    assert run_python(code).stdout.strip().endswith("True")


def test_collection_and_config_move_to_another_directory(tmp_path, model_dirs, ke):
    from promptembed.calibration import Calibration, fit_fields

    home = tmp_path / "project"
    cal = Calibration.fit(ke.embed_raw(DOCS * 2), fitted_on=fit_fields(ke.config)).save(home)
    (home / "promptembed.toml").write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'calibration = "{cal.name}"\n[store]\npath = "db"\ncollection = "docs"\n',
        encoding="utf-8",
    )
    col = open_collection(home / "promptembed.toml")
    col.add(ids=[f"d{i}" for i in range(len(DOCS))], documents=DOCS)
    before = col.query(query_texts=["a horse"], n_results=3)
    stored = col.configuration_json["embedding_function"]["config"]
    assert str(tmp_path) not in json.dumps(stored)  # no machine path is persisted
    del col

    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(home, moved)
    shutil.rmtree(home)
    after = open_collection(moved / "promptembed.toml").query(query_texts=["a horse"], n_results=3)
    assert after["ids"] == before["ids"]
    np.testing.assert_allclose(after["distances"], before["distances"], atol=1e-6)

    # Chroma rebuilds the function in a fresh process: found on the search path.
    code = f"""
import json, chromadb, promptembed.chroma
col = chromadb.PersistentClient({str(moved / "db")!r}).get_collection("docs")
print(json.dumps(col.query(query_texts=["a horse"], n_results=3)["ids"]))
"""
    out = run_python(code, env={"PROMPTEMBED_CALIBRATION_PATH": str(moved)})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == before["ids"]


def test_missing_calibration_names_its_hash_and_where_it_looked(tmp_path, model_dirs, ke):
    from promptembed.calibration import Calibration, fit_fields
    from promptembed.config import load_config

    cal = Calibration.fit(ke.embed_raw(DOCS * 2), fitted_on=fit_fields(ke.config))
    name = cal.save(tmp_path / "elsewhere").name
    toml = tmp_path / "promptembed.toml"
    toml.write_text(f'[embedder]\ncalibration = "{name}"\n', encoding="utf-8")
    with pytest.raises(FileNotFoundError) as info:
        load_config(toml)
    message = str(info.value)
    assert name.removeprefix("calibration-").removesuffix(".npz") in message
    assert str(tmp_path) in message and "PROMPTEMBED_CALIBRATION_PATH" in message
