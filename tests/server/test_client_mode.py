"""Client mode: the CLI, LangChain and ``retrieve`` embed through a running ``promptembed serve``.

One real server subprocess (the tiny Llama, template ``eol``) on a free loopback port,
protected by an API key. Vectors made through it must equal in-process ones, and the
guard must decide exactly as in process: a collection built in process is queried
through the server and the reverse when the identities match, refused on write and on
query when they do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
chromadb = pytest.importorskip("chromadb")
pytest.importorskip("langchain_chroma")
httpx = pytest.importorskip("httpx")

import promptembed  # noqa: E402
from promptembed.config import EmbedderConfig  # noqa: E402
from promptembed.engine.remote import EmbeddingServerError, RemoteEmbedder  # noqa: E402
from promptembed.identity import of_embedder  # noqa: E402
from promptembed.ingest.pipeline import index_paths  # noqa: E402
from promptembed.langchain import PromptEmbeddings, open_vectorstore  # noqa: E402
from promptembed.registry import shared_embedder  # noqa: E402
from promptembed.store.guard import EmbedderConflictError  # noqa: E402
from promptembed.store.reading import query  # noqa: E402
from tests.helpers import DOCS, QUIET_ENV, free_port, store_config, write_corpus  # noqa: E402
from tests.server.test_server import _wait_until_healthy  # noqa: E402

KEY = "client-mode-key"
TEMPLATE = "eol"  # what the server serves; "ke" makes a mismatched in-process collection
QUERY = "where do the bees find flowers?"
CLI = [sys.executable, "-c", "from promptembed.cli import app; app()"]


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory) -> Iterator[str]:
    """``promptembed serve`` in its own process; yields its base URL."""
    port = free_port()
    toml = tmp_path_factory.mktemp("serve") / "serve.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'template = "{TEMPLATE}"\n[server]\nlog_level = "warning"\n'
    )
    env = {**os.environ, **QUIET_ENV, "PROMPTEMBED_API_KEY": KEY}
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(toml), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(proc, base, timeout=120)
        yield base
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def key(monkeypatch) -> None:
    """This process's client reads the server's key from the default variable."""
    monkeypatch.setenv("PROMPTEMBED_API_KEY", KEY)


@pytest.fixture(scope="module")
def local(embedder_factory):
    """The in-process embedder the server's vectors must equal."""
    return embedder_factory("llama", template=TEMPLATE)


def client_config(server: str, db: Path, collection: str = "docs") -> dict[str, Any]:
    """A client config: the server names the embedder; no model field at all."""
    return {"embedder": {"server": server}, "store": {"path": str(db), "collection": collection}}


def cli_query(config: dict[str, Any], tmp_path: Path, key: str = KEY) -> Any:
    """``promptembed query --json`` in a fresh process, with its config as a TOML file."""
    store = config["store"]
    toml = tmp_path / f"client-{store['collection']}.toml"
    toml.write_text(
        f'[embedder]\nserver = "{config["embedder"]["server"]}"\n[store]\n'
        f'path = "{Path(store["path"]).as_posix()}"\ncollection = "{store["collection"]}"\n'
    )
    env = {**os.environ, **QUIET_ENV, "PROMPTEMBED_API_KEY": key}
    cmd = [*CLI, "query", "--json", "-k", "3", "--config", str(toml), QUERY]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.procs
def test_remote_vectors_and_identity_equal_in_process(server, key, local):
    remote = shared_embedder(EmbedderConfig(server=server))
    assert isinstance(remote, RemoteEmbedder)
    # The identity is the server's, exactly: fields, weights fingerprint, precision.
    assert of_embedder(remote) == of_embedder(local)
    assert remote.dimension == local.dimension and remote.precision == "float32"
    assert remote.config.template == TEMPLATE and remote.config.server == server
    for kind in ("document", "query"):
        np.testing.assert_allclose(
            remote.embed(DOCS, kind=kind), local.embed(DOCS, kind=kind), atol=1e-6
        )
    np.testing.assert_allclose(remote.embed(DOCS[0]), local.embed(DOCS[0]), atol=1e-6)
    assert remote.embed([]).shape == (0, local.dimension)


@pytest.mark.procs
def test_cli_query_through_the_server_equals_in_process_and_the_reverse(
    server, key, local, tmp_path
):
    corpus = write_corpus(tmp_path)
    # Built in process, queried through the server by the CLI in another process.
    built_here = store_config(Path(local.config.model), tmp_path / "db1", template=TEMPLATE)
    index_paths([corpus], built_here, embedder=local)
    result = cli_query(client_config(server, tmp_path / "db1"), tmp_path)
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    expected = query(QUERY, built_here, k=3, embedder=local)
    assert [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-5)

    # Built through the server (client mode), queried in process: the same vectors.
    through = client_config(server, tmp_path / "db2")
    assert index_paths([corpus], through).embedded > 0
    again = query(QUERY, store_config(Path(local.config.model), tmp_path / "db2",
                                      template=TEMPLATE), k=3, embedder=local)  # fmt: skip
    assert [h.id for h in again] == [h.id for h in expected]
    assert [h.id for h in promptembed.retrieve(through, QUERY, k=3)] == [h.id for h in expected]


@pytest.mark.procs
def test_langchain_store_in_client_mode_stores_in_process_vectors(server, key, local, tmp_path):
    store = open_vectorstore(client_config(server, tmp_path / "db"))
    store.add_texts(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
    got = store._collection.get(ids=[f"d{i}" for i in range(len(DOCS))], include=["embeddings"])
    np.testing.assert_allclose(np.array(got["embeddings"]), local.embed(DOCS), atol=1e-6)
    assert store.similarity_search(DOCS[2], k=1)[0].page_content == DOCS[2]
    # The adapter takes the same argument on its own.
    embeddings = PromptEmbeddings(server=server)
    np.testing.assert_allclose(
        embeddings.embed_query(QUERY), local.embed(QUERY, kind="query"), atol=1e-6
    )
    # Chroma keeps the server's config (which made the vectors), never the URL.
    stored = store._collection.configuration_json["embedding_function"]["config"]["embedder"]
    assert stored["template"] == TEMPLATE and "server" not in stored


def _names_both(error: BaseException | str) -> None:
    message = str(error)
    assert "differs in: template" in message, message
    assert "template='ke'" in message and f"template={TEMPLATE!r}" in message, message


@pytest.mark.procs
def test_mismatched_identity_is_refused_on_write_and_on_query(server, key, model_dirs, tmp_path):
    from langchain_chroma import Chroma

    # A collection of another embedder (template ke), built in process.
    other = store_config(model_dirs["llama"], tmp_path / "db", template="ke")
    index_paths([write_corpus(tmp_path)], other)
    through = client_config(server, tmp_path / "db")
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    count = client.get_collection("docs").count()
    # Write: the checked store refuses to open, a drop-in store refuses its first write.
    with pytest.raises(EmbedderConflictError) as error:
        open_vectorstore(through)
    _names_both(error.value)
    drop_in = Chroma(
        client=client, collection_name="docs", embedding_function=PromptEmbeddings(server=server)
    )
    with pytest.raises(EmbedderConflictError) as error:
        drop_in.add_texts(["never written"])
    _names_both(error.value)
    # Query: retrieve, and the CLI (one line, exit 2).
    with pytest.raises(EmbedderConflictError) as error:
        promptembed.retrieve(through, QUERY)
    _names_both(error.value)
    result = cli_query(through, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    _names_both(" ".join(result.stderr.split()))
    assert client.get_collection("docs").count() == count  # nothing was written

    # The reverse: built through the server, refused in process with another template.
    index_paths([tmp_path / "corpus"], client_config(server, tmp_path / "db-served"))
    with pytest.raises(EmbedderConflictError) as error:
        query(QUERY, store_config(model_dirs["llama"], tmp_path / "db-served", template="ke"))
    _names_both(error.value)


@pytest.mark.procs
def test_wrong_key_is_401_and_one_clear_line(server, monkeypatch, local, tmp_path):
    wrong = {"Authorization": "Bearer not-the-key"}
    assert httpx.get(f"{server}/v1/models", headers=wrong, timeout=10).status_code == 401
    assert httpx.get(f"{server}/v1/models", timeout=10).status_code == 401
    monkeypatch.setenv("PROMPTEMBED_API_KEY", "not-the-key")
    with pytest.raises(EmbeddingServerError) as error:
        RemoteEmbedder(EmbedderConfig(server=server))
    message = str(error.value)
    assert "\n" not in message and "(401)" in message and "$PROMPTEMBED_API_KEY" in message
    monkeypatch.delenv("PROMPTEMBED_API_KEY")
    with pytest.raises(EmbeddingServerError, match=r"PROMPTEMBED_API_KEY is not set"):
        RemoteEmbedder(EmbedderConfig(server=server))
    built = store_config(Path(local.config.model), tmp_path / "db", template=TEMPLATE)
    index_paths([write_corpus(tmp_path)], built, embedder=local)
    result = cli_query(client_config(server, tmp_path / "db"), tmp_path, key="not-the-key")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "(401)" in lines[0] and "Traceback" not in result.stderr, lines


@pytest.mark.procs
def test_client_refuses_what_the_server_does_not_make(server, key):
    # A field set next to `server` must agree with the server's.
    with pytest.raises(ValueError, match=r"template='ke' \(the server: 'eol'\)"):
        RemoteEmbedder(EmbedderConfig(server=server, template="ke"))
    # A server restarted with another embedder: its answers name another identity.
    remote = RemoteEmbedder(EmbedderConfig(server=server))
    remote.identity_key = "another-identity"
    with pytest.raises(EmbeddingServerError, match="now serves another embedder"):
        remote.embed(["x"])


def test_unreachable_server_is_one_clear_line():
    with pytest.raises(EmbeddingServerError) as error:
        RemoteEmbedder(EmbedderConfig(server=f"http://127.0.0.1:{free_port()}"), timeout=5)
    message = str(error.value)
    assert "\n" not in message and "cannot reach the embedding server" in message


@pytest.mark.procs
def test_llama_index_and_chroma_take_the_server_argument(server, key, local):
    pytest.importorskip("llama_index.core")
    from promptembed.chroma import PromptEmbeddingFunction
    from promptembed.llama_index import PromptEmbedding

    expected = local.embed(DOCS[:2])
    function = PromptEmbeddingFunction(server=server)
    np.testing.assert_allclose(np.array(function(DOCS[:2])), expected, atol=1e-6)
    # Chroma persists the server's config (it made the vectors), never the URL.
    assert function.get_config()["embedder"]["template"] == TEMPLATE
    assert "server" not in function.get_config()["embedder"]
    embedding = PromptEmbedding(server=server)
    got = embedding.get_text_embedding_batch(DOCS[:2])
    np.testing.assert_allclose(np.array(got), expected, atol=1e-6)
