"""The guard (promptembed.store.guard): one embedder per collection, adoption, markers.

Every path that writes is guarded (refused with nothing written when the collection holds
another embedder's vectors); a collection without a record (a drop-in store) is adopted when
its stored vectors re-embed to themselves; an older record is verified and upgraded.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import warnings

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")
from promptembed import PromptEmbedder  # noqa: E402
from promptembed.chroma import open_collection  # noqa: E402
from promptembed.identity import VECTOR_FIELDS  # noqa: E402
from promptembed.store.function import PromptEmbeddingFunction  # noqa: E402
from promptembed.store.guard import META_HINT, EmbedderConflictError  # noqa: E402
from tests.helpers import DOCS, calibration_file, rewrite_weights, store_config  # noqa: E402


@pytest.fixture(scope="module")
def ke(embedder_factory):
    return embedder_factory("llama")


def _langchain(client, name, embedder):
    pytest.importorskip("langchain_chroma")
    from langchain_chroma import Chroma

    from promptembed.langchain import PromptEmbeddings

    store = Chroma(name, PromptEmbeddings.from_embedder(embedder), client=client)
    return lambda texts: store.add_texts(texts)


def _llama_index(client, name, embedder):
    pytest.importorskip("llama_index.vector_stores.chroma")
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from promptembed.llama_index import PromptEmbedding

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
    pytest.importorskip("langchain_chroma")
    pytest.importorskip("llama_index.vector_stores.chroma")
    from promptembed.langchain import open_vectorstore
    from promptembed.llama_index import open_index

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


def _snapshot(client, name):
    col = client.get_collection(name, embedding_function=None)
    got = col.get(include=["embeddings", "documents", "metadatas"])
    return col.metadata, col.configuration_json, got["ids"], np.asarray(got["embeddings"])


@pytest.mark.parametrize(
    "change",
    [
        {"template": "eol"},
        {"layer": -2},
        {"query_template": "eol"},
        {"model": "gpt2"},
        {"dtype": "int8"},
    ],
    ids=["template", "layer", "query_template", "model", "dtype"],
)
def test_conflicting_embedder_fails_and_leaves_collection(
    tmp_path, model_dirs, embedder_factory, ke, change
):
    db = tmp_path / "db"
    col = open_collection(store_config(model_dirs["llama"], db), embedder=ke)
    col.add(ids=["a", "b"], documents=DOCS[:2])
    client = chromadb.PersistentClient(str(db))
    before = _snapshot(client, "docs")

    arch = "gpt2" if change.get("model") == "gpt2" else "llama"
    fields = {k: v for k, v in change.items() if k != "model"}
    other = embedder_factory(arch, **fields)
    with pytest.raises(EmbedderConflictError) as info:
        open_collection(store_config(model_dirs[arch], db, **fields), embedder=other)
    message = str(info.value)
    assert "'docs'" in message and "differs in" in message
    assert str(model_dirs["llama"]) in message and str(model_dirs[arch]) in message
    key = next(iter(change))
    key = "precision" if key == "dtype" else key  # the identity names the resolved precision
    assert key in message.split("differs in:")[1]

    after = _snapshot(client, "docs")
    assert after[0] == before[0] and after[1] == before[1] and after[2] == before[2]
    np.testing.assert_array_equal(after[3], before[3])


def test_foreign_collection_with_vectors_is_refused(tmp_path, model_dirs, ke):
    db = tmp_path / "db"
    client = chromadb.PersistentClient(str(db))
    foreign = client.create_collection("docs", embedding_function=None)
    foreign.add(ids=["x"], embeddings=[[0.1] * ke.dimension], documents=["x"])
    with pytest.raises(EmbedderConflictError, match="another embedder"):
        open_collection(store_config(model_dirs["llama"], db), embedder=ke)
    assert client.get_collection("docs", embedding_function=None).metadata is None


def test_same_embedder_reopens(tmp_path, model_dirs, ke):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    open_collection(cfg, embedder=ke).add(ids=["a"], documents=["x"])
    # Fields outside the identity (batch size, device) may change freely.
    again = open_collection({**cfg, "embedder": {**cfg["embedder"], "batch_size": 3}})
    assert again.count() == 1


def test_a_moved_model_directory_still_opens_its_collection(tmp_path, model_dirs):
    # The weights are compared by content: the folder they load from may move.
    first, moved = tmp_path / "models" / "a", tmp_path / "elsewhere" / "a-copy"
    shutil.copytree(model_dirs["llama"], first)
    db = tmp_path / "db"
    col = open_collection(store_config(first, db), embedder=PromptEmbedder(str(first)))
    col.add(ids=["a", "b"], documents=DOCS[:2])
    shutil.move(first, moved)
    again = open_collection(store_config(moved, db))
    again.add(ids=["c"], documents=DOCS[2:3])
    assert again.count() == 3
    assert again.query(query_texts=[DOCS[2]], n_results=1)["ids"] == [["c"]]


def _shorter_merges(here) -> None:
    data = json.loads((here / "tokenizer.json").read_text())
    data["model"]["merges"] = data["model"]["merges"][:-40]  # same weights, new tokenizer
    (here / "tokenizer.json").write_text(json.dumps(data))


# Before, a tokenizer changed in place was accepted (vectors at cosine 0.9886 to the old).
@pytest.mark.parametrize(
    "change",
    [lambda here: rewrite_weights(here, seed=2), _shorter_merges],
    ids=["weights", "tokenizer"],
)
def test_weights_or_tokenizer_changed_in_place_are_refused_by_the_collection(
    tmp_path, model_dirs, change
):
    from promptembed.chroma import open_collection
    from promptembed.store.guard import EmbedderConflictError

    here = tmp_path / "model"
    shutil.copytree(model_dirs["llama"], here)
    cfg = store_config(here, tmp_path / "db")
    col = open_collection(cfg, embedder=PromptEmbedder(str(here), device="cpu"))
    col.add(ids=["a", "b"], documents=DOCS[:2])
    change(here)
    with pytest.raises(EmbedderConflictError, match="weights"):
        open_collection(cfg, embedder=PromptEmbedder(str(here), device="cpu"))
    assert col.count() == 2


def test_a_format_2_record_is_verified_then_marked_with_todays_fingerprint(
    tmp_path, model_dirs, embedder_factory
):
    import chromadb

    from promptembed.chroma import open_collection
    from promptembed.store.guard import FORMAT_VERSION

    embedder = embedder_factory("llama")
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    col = open_collection(cfg, embedder=embedder)
    col.add(ids=[str(i) for i in range(5)], documents=DOCS)
    # As the previous release wrote it: format 2, a fingerprint without the tokenizer.
    meta = {k: v for k, v in col.metadata.items() if not k.startswith("hnsw:")}
    record = json.loads(meta["promptembed_identity"])
    record["weights"] = "0123456789abcdef"
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    client.get_collection("docs").modify(
        metadata={**meta, "promptembed_identity": json.dumps(record), "promptembed_format": 2}
    )
    from promptembed.store import guard

    guard._ADMITTED.clear()  # as in a new process: nothing admitted yet
    reopened = open_collection(cfg, embedder=embedder)  # verified by re-embedding, not refused
    assert reopened.metadata["promptembed_format"] == FORMAT_VERSION == 3
    assert json.loads(reopened.metadata["promptembed_identity"])["weights"] == embedder.fingerprint


def test_format_1_record_is_verified_and_upgraded(tmp_path, model_dirs, embedder_factory):
    import chromadb

    from promptembed.chroma import open_collection
    from promptembed.store.guard import FORMAT_VERSION, META_IDENTITY, EmbedderConflictError

    embedder = embedder_factory("llama")
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    old_record = {k: embedder.config.model_dump()[k] for k in VECTOR_FIELDS}
    old_record["calibration"] = None
    for name, vectors in (("same", embedder.embed(DOCS)), ("other", np.ones((5, 32)))):
        old = client.create_collection(
            name,
            embedding_function=None,
            metadata={META_IDENTITY: json.dumps(old_record), "promptembed_format": 1},
            configuration={"hnsw": {"space": "cosine"}},
        )
        old.add(ids=[str(i) for i in range(5)], embeddings=vectors, documents=DOCS)
    cfg = store_config(model_dirs["llama"], tmp_path / "db", collection="same")
    assert open_collection(cfg, embedder=embedder).metadata["promptembed_format"] == FORMAT_VERSION
    cfg = store_config(model_dirs["llama"], tmp_path / "db", collection="other")
    with pytest.raises(EmbedderConflictError, match="older version"):
        open_collection(cfg, embedder=embedder)
    assert client.get_collection("other").metadata["promptembed_format"] == 1


@pytest.fixture
def files(tmp_path, model_dirs):
    return (
        calibration_file(model_dirs["llama"], tmp_path / "a", "center"),
        calibration_file(model_dirs["llama"], tmp_path / "b", "whiten"),
    )


def test_collection_refuses_another_calibration(tmp_path, model_dirs, files):
    db = tmp_path / "db"
    first = store_config(model_dirs["llama"], db, template="eol", calibration=files[0])
    col = open_collection(first)
    col.add(ids=["a", "b"], documents=DOCS[:2])
    other = store_config(model_dirs["llama"], db, template="eol", calibration=files[1])
    with pytest.raises(EmbedderConflictError, match="calibration"):
        open_collection(other)
    plain = store_config(model_dirs["llama"], db, template="eol")
    with pytest.raises(EmbedderConflictError, match="calibration"):
        open_collection(plain)
    assert open_collection(first).count() == 2  # untouched, and the same config reopens


# -- issue 21: every write and every read, subclasses, adoption samples the whole store ------


def _count(client, name="docs"):
    return client.get_collection(name, embedding_function=None).count()


def _both_named(error):
    message = str(error.value)
    return "template='ke'" in message and "template='eol'" in message


def _ke_collection(tmp_path, ke):
    """A collection made by open_collection with the ``ke`` embedder, holding DOCS."""
    cfg = store_config(tmp_path / "unused", tmp_path / "db")
    cfg["embedder"]["model"] = ke.config.model
    open_collection(cfg, embedder=ke).add(ids=[str(i) for i in range(len(DOCS))], documents=DOCS)
    return chromadb.PersistentClient(str(tmp_path / "db")), cfg


def _nodes_embedded_by(embedding, texts):
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    pipeline = IngestionPipeline(transformations=[SentenceSplitter(), embedding])
    return pipeline.run(documents=[Document(text=t) for t in texts])


def test_llama_index_precomputed_nodes_of_another_embedder_are_refused(tmp_path, ke, eol):
    pytest.importorskip("llama_index.vector_stores.chroma")
    from promptembed.llama_index import PromptEmbedding, open_index

    client, cfg = _ke_collection(tmp_path, ke)
    index = open_index(cfg, embedder=ke)
    nodes = _nodes_embedded_by(PromptEmbedding.from_embedder(eol), ["A dog runs in a park."])
    assert nodes[0].embedding is not None
    before = _count(client)
    with pytest.raises(EmbedderConflictError) as info:
        index.insert_nodes(nodes)
    assert _both_named(info) and _count(client) == before
    with pytest.raises(EmbedderConflictError) as info:
        asyncio.run(index.ainsert_nodes(nodes))
    assert _both_named(info) and _count(client) == before
    # Nodes the collection's own embedder made go in, as do nodes without a vector.
    index.insert_nodes(_nodes_embedded_by(PromptEmbedding.from_embedder(ke), ["Own vectors."]))
    for node in nodes:
        node.embedding = None
    index.insert_nodes(nodes)
    assert _count(client) == before + 2


def test_precomputed_nodes_tagged_in_another_process_are_judged_by_their_tag(tmp_path, ke, eol):
    pytest.importorskip("llama_index.vector_stores.chroma")
    from llama_index.core.schema import MetadataMode

    from promptembed.llama_index import PromptEmbedding, open_index
    from promptembed.store import precomputed

    client, cfg = _ke_collection(tmp_path, ke)
    index = open_index(cfg, embedder=ke)
    nodes = _nodes_embedded_by(PromptEmbedding.from_embedder(eol), ["A dog runs in a park."])
    tag = nodes[0].metadata[precomputed.TAG]
    assert precomputed.TAG not in nodes[0].get_content(metadata_mode=MetadataMode.EMBED)
    assert precomputed.TAG not in nodes[0].get_content(metadata_mode=MetadataMode.LLM)
    precomputed._RECENT.clear()  # as if embedded by another process: only the tag is left
    with pytest.raises(EmbedderConflictError, match="precomputed by"):
        index.insert_nodes(nodes)
    assert _count(client) == len(DOCS)
    # A tag that does not match the vector (replaced after tagging) counts for nothing:
    # the vector is then verified by re-embedding, and refused.
    nodes[0].embedding = [1.0] + [0.0] * (ke.dimension - 1)
    assert nodes[0].metadata[precomputed.TAG] == tag
    with pytest.raises(EmbedderConflictError, match="does not know"):
        index.insert_nodes(nodes)
    assert _count(client) == len(DOCS)


def test_untagged_precomputed_vectors_are_verified_by_re_embedding(tmp_path, ke, eol):
    pytest.importorskip("llama_index.vector_stores.chroma")
    from llama_index.core.schema import TextNode

    from promptembed.llama_index import open_index

    client, cfg = _ke_collection(tmp_path, ke)
    index = open_index(cfg, embedder=ke)
    foreign = [TextNode(text=t, embedding=eol.embed(t).tolist()) for t in DOCS[:2]]
    with pytest.raises(EmbedderConflictError, match="does not know"):
        index.insert_nodes(foreign)
    assert _count(client) == len(DOCS)
    same = [TextNode(text=t, embedding=ke.embed(t).tolist()) for t in ("x y", "z w")]
    index.insert_nodes(same)  # another library's copy of the same embedder: accepted
    assert _count(client) == len(DOCS) + 2


def _langchain_store(client, embedder, cls=None):
    pytest.importorskip("langchain_chroma")
    from langchain_chroma import Chroma

    from promptembed.langchain import PromptEmbeddings

    cls = cls or Chroma
    return cls(
        client=client,
        collection_name="docs",
        embedding_function=PromptEmbeddings.from_embedder(embedder),
    )


def _llama_index_retriever(client, embedder):
    pytest.importorskip("llama_index.vector_stores.chroma")
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from promptembed.llama_index import PromptEmbedding

    store = ChromaVectorStore(chroma_collection=client.get_collection("docs"))
    index = VectorStoreIndex.from_vector_store(
        store, embed_model=PromptEmbedding.from_embedder(embedder)
    )
    return index.as_retriever(similarity_top_k=2)


READERS = {
    "langchain-similarity_search": lambda c, e: _langchain_store(c, e).similarity_search(
        DOCS[0], k=2
    ),
    "langchain-retriever": lambda c, e: _langchain_store(c, e).as_retriever().invoke(DOCS[0]),
    "langchain-async": lambda c, e: asyncio.run(
        _langchain_store(c, e).asimilarity_search(DOCS[0], k=2)
    ),
    "llama_index-retrieve": lambda c, e: _llama_index_retriever(c, e).retrieve(DOCS[0]),
    "llama_index-aretrieve": lambda c, e: asyncio.run(
        _llama_index_retriever(c, e).aretrieve(DOCS[0])
    ),
    "chroma-query": lambda c, e: c.get_or_create_collection(
        "docs", embedding_function=PromptEmbeddingFunction(embedder=e)
    ).query(query_texts=[DOCS[0]], n_results=2),
}


@pytest.mark.parametrize("face", READERS)
def test_a_query_by_another_embedder_is_refused_on_every_face(tmp_path, face, ke, eol):
    client, _ = _ke_collection(tmp_path, ke)
    with pytest.raises(EmbedderConflictError) as info:
        READERS[face](client, eol)
    assert _both_named(info)
    assert READERS[face](client, ke)  # the collection's own embedder still answers


def test_subclasses_of_the_framework_stores_are_guarded_alike(tmp_path, ke, eol):
    pytest.importorskip("langchain_chroma")
    pytest.importorskip("llama_index.vector_stores.chroma")
    from langchain_chroma import Chroma
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from promptembed.llama_index import PromptEmbedding

    class MyChroma(Chroma):
        pass

    class MyChromaVectorStore(ChromaVectorStore):
        pass

    client, _ = _ke_collection(tmp_path, ke)
    with pytest.raises(EmbedderConflictError) as info:
        _langchain_store(client, eol, MyChroma).add_texts(["A dog runs."])
    assert _both_named(info) and _count(client) == len(DOCS)
    store = MyChromaVectorStore(chroma_collection=client.get_collection("docs"))
    index = VectorStoreIndex.from_vector_store(
        store,
        embed_model=PromptEmbedding.from_embedder(eol),
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    with pytest.raises(EmbedderConflictError) as info:
        index.insert(Document(text="A dog runs."))
    assert _both_named(info) and _count(client) == len(DOCS)
    with pytest.raises(EmbedderConflictError):
        index.as_retriever().retrieve("a dog")


def test_adoption_samples_the_whole_collection(tmp_path, ke, eol):
    """8 records of one embedder first, then 5 of another: adoption must not pass."""
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    col = client.create_collection("docs", embedding_function=None)
    texts = [f"document number {i} about topic {i % 3}" for i in range(13)]
    vectors = np.concatenate([ke.embed(texts[:8]), eol.embed(texts[8:])])
    col.add(ids=[f"{i:02d}" for i in range(13)], embeddings=vectors, documents=texts)
    cfg = store_config(tmp_path / "unused", tmp_path / "db")
    cfg["embedder"]["model"] = ke.config.model
    with pytest.raises(EmbedderConflictError, match="another embedder"):
        open_collection(cfg, embedder=ke)
    assert client.get_collection("docs").metadata is None  # not adopted, not marked


def test_adoption_sample_is_random_and_sized_to_catch_a_5_percent_minority(monkeypatch):
    from promptembed.store import guard

    assert 1 - 0.95**guard.ADOPT_SAMPLE >= 0.99

    class Fake:
        def __init__(self, n):
            self.n, self.offsets = n, []

        def count(self):
            return self.n

        def get(self, offset=0, limit=None, include=()):
            self.offsets.append(offset)
            rows = range(offset, min(self.n, offset + (limit or self.n)))
            return {"ids": list(rows), "documents": [str(i) for i in rows],
                    "embeddings": [[float(i)] for i in rows]}  # fmt: skip

    small = Fake(40)
    assert len(guard.sample_records(small, guard.ADOPT_SAMPLE)["documents"]) == 40  # all of it
    big = Fake(10_000)
    got = guard.sample_records(big, guard.ADOPT_SAMPLE)
    assert len(set(got["documents"])) == guard.ADOPT_SAMPLE
    assert max(big.offsets) > 5_000  # drawn across the collection, not its head
