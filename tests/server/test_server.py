"""The OpenAI-compatible server, started for real on a free loopback port.

Every network call goes to 127.0.0.1, every loop and wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from promptembed.config import ServerConfig, load_config  # noqa: E402
from promptembed.server import DynamicBatcher, QueueFullError, create_app  # noqa: E402
from tests.helpers import free_port  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = [
    "A man is playing a guitar.",
    "一个男人在弹吉他。",
    "",
    "Stocks fell sharply on Monday 📉",
    "The cat sat on the mat.",
]


class LiveServer:
    """A real uvicorn server on a thread (no signal handlers), stopped by ``stop``."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "server thread died during startup"
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.02)

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server did not stop"


def server_config(model_dir: Path, **server: Any) -> dict[str, Any]:
    limits = {
        "api_key": KEY,
        "max_inputs_per_request": 8,
        "max_chars_per_input": 200,
        "max_request_bytes": 8192,
        "max_queued_inputs": 512,
        "max_batch_wait_ms": 20,
        "model_name": "tiny-llama",
        **server,
    }
    return {"embedder": {"model": str(model_dir), "device": "cpu"}, "server": limits}


@pytest.fixture(scope="module")
def live(model_dirs) -> Iterator[LiveServer]:
    """The tiny Llama served from its config: the embedder loads in the lifespan."""
    srv = LiveServer(create_app(server_config(model_dirs["llama"])))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ref(embedder_factory):
    """The in-process embedder the server's vectors must equal."""
    return embedder_factory("llama")


def health(base: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/health", timeout=10)
    assert r.status_code == 200
    return r.json()


# -- clients ------------------------------------------------------------------------------


def _wait_until_healthy(proc: subprocess.Popen, base: str, timeout: float = 60) -> None:
    """Wait for a server subprocess to answer /health; fail with its output if it dies."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"server did not come up in {timeout:.0f} s"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)


@pytest.mark.procs
def test_openai_client_base64_and_float_equal_in_process(live, ref):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=KEY, max_retries=0, timeout=30)
    expected = ref.embed(TEXTS)
    # The client asks for base64 unless told otherwise, and decodes it.
    got = client.embeddings.create(input=TEXTS, model="tiny-llama")
    assert [d.index for d in got.data] == list(range(len(TEXTS)))
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected, atol=1e-6)
    assert got.usage.prompt_tokens > 0 and got.usage.total_tokens == got.usage.prompt_tokens
    floats = client.embeddings.create(input=TEXTS[0], model="x", encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, expected[0], atol=1e-6)
    assert [m.id for m in client.models.list()] == ["tiny-llama"]
    assert client.models.retrieve("tiny-llama").id == "tiny-llama"


@pytest.mark.procs
def test_response_is_exactly_openai_shape(live, ref):
    r = httpx.post(
        f"{live.base}/v1/embeddings", json={"input": TEXTS[:2], "model": "m"}, headers=AUTH
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == "tiny-llama"
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    for i, item in enumerate(body["data"]):
        assert item.keys() == {"object", "index", "embedding"}
        assert item["object"] == "embedding" and item["index"] == i
        assert len(item["embedding"]) == ref.dimension
    b64 = httpx.post(
        f"{live.base}/v1/embeddings",
        json={
            "input": TEXTS[1],
            "encoding_format": "base64",
            "kind": "query",
            "dimensions": ref.dimension,
            "user": "someone",
            "unknown_field": 1,
        },
        headers=AUTH,
    ).json()["data"][0]["embedding"]
    vec = np.frombuffer(base64.b64decode(b64), dtype="<f4")
    np.testing.assert_allclose(vec, ref.embed(TEXTS[1], kind="query"), atol=1e-6)


@pytest.mark.procs
def test_langchain_openai_embeddings(live, ref):
    lco = pytest.importorskip("langchain_openai")
    emb = lco.OpenAIEmbeddings(
        base_url=f"{live.base}/v1",
        api_key=KEY,
        model="tiny-llama",
        check_embedding_ctx_length=False,
        chunk_size=8,
        max_retries=0,
    )
    docs = TEXTS * 3  # 15 texts: LangChain splits them into requests of <= 8
    np.testing.assert_allclose(emb.embed_documents(docs), ref.embed(docs), atol=1e-6)
    np.testing.assert_allclose(emb.embed_query(TEXTS[0]), ref.embed(TEXTS[0]), atol=1e-6)


@pytest.mark.procs
def test_chroma_openai_embedding_function(live, ref):
    pytest.importorskip("chromadb")
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

    fn = OpenAIEmbeddingFunction(api_key=KEY, api_base=f"{live.base}/v1", model_name="tiny-llama")
    np.testing.assert_allclose(np.array(fn(TEXTS)), ref.embed(TEXTS), atol=1e-6)


@pytest.mark.procs
def test_32_concurrent_clients_share_batches(live, ref):
    clients, rounds = 32, 3
    before = health(live.base)
    barrier = threading.Barrier(clients, timeout=30)

    def client(c: int) -> list[tuple[list[str], np.ndarray]]:
        out = []
        with httpx.Client(base_url=live.base, headers=AUTH, timeout=60) as http:
            barrier.wait()
            for r in range(rounds):
                texts = [f"client {c} round {r} item {i}" for i in range(1 + (c + r) % 4)]
                resp = http.post("/v1/embeddings", json={"input": texts, "model": "m"})
                assert resp.status_code == 200, resp.text
                out.append((texts, np.array([d["embedding"] for d in resp.json()["data"]])))
        return out

    with ThreadPoolExecutor(clients) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(client, c) for c in range(clients)]]
    for per_client in results:
        for texts, got in per_client:
            np.testing.assert_allclose(got, ref.embed(texts), atol=1e-5)
    after = health(live.base)
    requests = after["requests"] - before["requests"]
    assert requests == clients * rounds
    assert after["batches"] - before["batches"] < requests  # requests were gathered
    assert after["queued_inputs"] == 0


# -- limits and errors: each a clear 4xx in OpenAI's shape, and the server stays up ----------


def _post(base: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None):
    headers = {**AUTH, **(headers or {})}
    if isinstance(body, dict):
        return httpx.post(f"{base}/v1/embeddings", json=body, headers=headers, timeout=30)
    headers.setdefault("content-type", "application/json")
    return httpx.post(f"{base}/v1/embeddings", content=body, headers=headers, timeout=30)


@pytest.mark.procs
@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"input": ["x"] * 9}, None, 400, "too_many_inputs"),
        ({"input": ["ok", "y" * 201]}, None, 400, "input_too_long"),
        (b'{"input": "' + b"z" * 9000 + b'"}', None, 413, "request_too_large"),
        (b'{"input": ["unterminated', None, 400, "invalid_json"),
        (b"[1, 2]", None, 400, None),
        ({"model": "m"}, None, 400, None),
        ({"input": [1, 2, 3]}, None, 400, "unsupported_input"),
        ({"input": [[1, 2], [3]]}, None, 400, "unsupported_input"),
        ({"input": []}, None, 400, None),
        ({"input": "a", "dimensions": 7}, None, 400, "unsupported_dimensions"),
        ({"input": "a", "dimensions": 0}, None, 400, None),
        ({"input": "a", "dimensions": True}, None, 400, None),
        ({"input": "a", "dimensions": "32"}, None, 400, None),
        ({"input": "a", "encoding_format": "int8"}, None, 400, None),
        (b'{"input": "\\ud800"}', None, 400, "invalid_unicode"),
        ({"input": "a"}, {"Authorization": "Bearer wrong-key"}, 401, "invalid_api_key"),
        ({"input": "a"}, {"Authorization": "Basic " + KEY}, 401, "invalid_api_key"),
    ],
    ids=[
        "too-many-inputs",
        "input-too-long",
        "body-too-large",
        "malformed-json",
        "not-an-object",
        "missing-input",
        "token-ids",
        "token-id-lists",
        "empty-list",
        "dimensions",
        "dimensions-zero",
        "dimensions-true",
        "dimensions-string",
        "encoding-format",
        "lone-surrogate",
        "wrong-key",
        "not-bearer",
    ],
)
def test_bad_request_gets_clear_4xx_and_server_stays_up(live, body, headers, status, code):
    r = _post(live.base, body, headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == code
    assert health(live.base)["status"] == "ok"


@pytest.mark.procs
def test_missing_key_and_unknown_routes(live):
    r = httpx.post(f"{live.base}/v1/embeddings", json={"input": "a"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{live.base}/v1/models").status_code == 401
    r = httpx.get(f"{live.base}/v1/models/other", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert httpx.get(f"{live.base}/nowhere").json()["error"]["type"] == "not_found_error"
    assert httpx.get(f"{live.base}/v1/embeddings", headers=AUTH).status_code == 405
    schema = httpx.get(f"{live.base}/openapi.json").json()
    assert {"/v1/embeddings", "/v1/models", "/health"} <= set(schema["paths"])


def schemathesis_cmd(base: str, max_examples: int, seed: int) -> list[str] | None:
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        return None
    return [
        exe,
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--no-color",
    ]


@pytest.mark.procs
def test_schemathesis_all_checks_pass(model_dirs, tmp_path):
    """The schema is the contract: every check, positive and negative data, all phases."""
    # Limits as in `live`, with a body limit that the schema's largest request fits in.
    srv = LiveServer(create_app(server_config(model_dirs["llama"], max_request_bytes=65536)))
    try:
        cmd = schemathesis_cmd(srv.base, max_examples=10, seed=7)
        if cmd is None:
            pytest.skip("schemathesis is not installed")
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_PROXY": "127.0.0.1"}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        summary = proc.stdout.split("SUMMARY")[-1]
        generated = re.search(r"(\d+) generated, \1 passed", summary)
        assert generated and int(generated.group(1)) >= 50, summary  # it really ran cases
        assert health(srv.base)["status"] == "ok"
    finally:
        srv.stop()


@pytest.mark.procs
def test_openapi_is_the_contract(live, ref):
    schema = httpx.get(f"{live.base}/openapi.json").json()
    request = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    text, texts = request["input"]["anyOf"]
    assert text == {"type": "string", "maxLength": 200}
    assert texts["items"] == text and (texts["minItems"], texts["maxItems"]) == (1, 8)
    assert {"type": "integer", "enum": [ref.dimension]} in request["dimensions"]["anyOf"]
    assert all(
        "422" not in op["responses"] for ops in schema["paths"].values() for op in ops.values()
    )
    model = schema["paths"]["/v1/models/{model_id}"]["get"]
    assert {"200", "401", "404"} <= set(model["responses"])
    post = schema["paths"]["/v1/embeddings"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert "security" not in schema["paths"]["/health"]["get"]


# -- back-pressure and graceful shutdown ----------------------------------------------------


class GatedEmbedder:
    """Delegates to a real embedder, but each ``embed`` waits for ``gate`` (bounded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.config = inner.config
        self.tokenizer = inner.tokenizer
        self.dimension = inner.dimension
        self.gate = threading.Event()

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        assert self.gate.wait(30), "test gate never opened"
        return self.inner.embed(texts, kind=kind)


@pytest.mark.procs
def test_queue_full_gets_429_then_shutdown_drains_in_flight(model_dirs, ref):
    gated = GatedEmbedder(ref)
    cfg = server_config(
        model_dirs["llama"], max_inputs_per_request=4, max_queued_inputs=8, max_batch_inputs=4
    )
    srv = LiveServer(create_app(cfg, embedder=gated))
    stopped = False
    try:
        batches = [[f"held {i} {j}" for j in range(4)] for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(_post, srv.base, {"input": t}) for t in batches]
            deadline = time.monotonic() + 20
            while health(srv.base)["queued_inputs"] < 8:  # both requests accepted, gate shut
                assert time.monotonic() < deadline, "requests were not queued"
                time.sleep(0.02)
            r = _post(srv.base, {"input": "one too many"})
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "queue_full"
            # Graceful shutdown while both are in flight: they must still be answered.
            srv.server.should_exit = True
            time.sleep(0.3)
            assert srv.thread.is_alive() and not any(f.done() for f in held)
            gated.gate.set()
            answers = [f.result(timeout=30) for f in held]
        srv.stop()  # the lifespan drained the batcher and joined its thread
        stopped = True
        # Compared once the server is done with `ref` (one tokenizer user at a time).
        for texts, resp in zip(batches, answers):
            assert resp.status_code == 200, resp.text
            got = np.array([d["embedding"] for d in resp.json()["data"]])
            np.testing.assert_allclose(got, ref.embed(texts), atol=1e-6)
    finally:
        gated.gate.set()
        if not stopped:
            srv.stop()


async def test_batcher_gathers_in_order_and_drains_on_close(ref):
    calls: list[int] = []

    class Recording:
        dimension = ref.dimension

        def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
            calls.append(len(texts))
            time.sleep(0.02)
            return ref.embed(texts, kind=kind)

    batcher = DynamicBatcher(Recording(), max_queued_inputs=64, max_batch_wait_ms=10)
    batcher.start()
    jobs = [[f"text {i} {j}" for j in range(1 + i % 3)] for i in range(12)]
    kinds = ["query" if i % 4 == 0 else "document" for i in range(12)]
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(t, k) for t, k in zip(jobs, kinds))), 30
    )
    for texts, kind, (vectors, _) in zip(jobs, kinds, results):
        np.testing.assert_allclose(vectors, ref.embed(texts, kind=kind), atol=1e-6)
    assert len(calls) < len(jobs) and sum(calls) == sum(map(len, jobs))
    with pytest.raises(QueueFullError):
        await batcher.submit(["x"] * 65, "document")
    pending = asyncio.ensure_future(batcher.submit(["drained on close"], "document"))
    await asyncio.sleep(0)
    await asyncio.wait_for(batcher.close(), 30)
    assert pending.done() and pending.result()[0].shape == (1, ref.dimension)
    assert batcher.queued_inputs == 0


# -- the CLI, the config and the optional extra -------------------------------------------------


def _serve(toml: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    """``promptembed serve --config toml --port port`` in a subprocess, with ``env`` added."""
    cmd = [sys.executable, "-c", "from promptembed.cli import app; app()", "serve"]
    return subprocess.Popen(
        [*cmd, "--config", str(toml), "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.procs
def test_cli_serve_answers_then_stops_on_sigterm(model_dirs, tmp_path, ref):
    port = free_port()
    toml = tmp_path / "promptembed.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[server]\napi_key_env = "PROMPTEMBED_TEST_KEY"\nlog_level = "warning"\n'
    )
    proc = _serve(toml, port, {"PROMPTEMBED_TEST_KEY": KEY})
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(proc, base)
        r = _post(base, {"input": TEXTS[:2]})
        assert r.status_code == 200
        got = np.array([d["embedding"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, ref.embed(TEXTS[:2]), atol=1e-6)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGTERM), out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.procs
def test_promptembed_api_key_alone_protects_the_server(model_dirs, tmp_path):
    # The documented default: with no [server] table, the variable alone sets the key.
    port = free_port()
    toml = tmp_path / "promptembed.toml"
    toml.write_text(f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n')
    proc = _serve(toml, port, {"PROMPTEMBED_API_KEY": "sekret"})
    base = f"http://127.0.0.1:{port}"
    body = {"input": ["a"], "model": "m"}
    try:
        _wait_until_healthy(proc, base)
        wrong = httpx.post(f"{base}/v1/embeddings", json=body, headers=_auth("wrong"), timeout=30)
        assert wrong.status_code == 401
        assert httpx.post(f"{base}/v1/embeddings", json=body, timeout=30).status_code == 401
        right = httpx.post(f"{base}/v1/embeddings", json=body, headers=_auth("sekret"), timeout=30)
        assert right.status_code == 200
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_default_api_key_env_is_optional_and_others_are_required(monkeypatch):
    monkeypatch.delenv("PROMPTEMBED_API_KEY", raising=False)
    assert ServerConfig().api_key_env == "PROMPTEMBED_API_KEY"
    assert ServerConfig().resolved_api_key() is None  # unset: no key, loopback only
    with pytest.raises(ValueError, match="--insecure"):
        ServerConfig(host="0.0.0.0").check_binding()
    monkeypatch.setenv("PROMPTEMBED_API_KEY", "k")
    assert ServerConfig().resolved_api_key() == "k"
    ServerConfig(host="0.0.0.0").check_binding()
    assert ServerConfig(api_key="own").resolved_api_key() == "own"


def test_server_config_validation(monkeypatch):
    cfg = load_config({"server": {"port": 9001, "api_key_env": "PE_KEY_FOR_TEST"}}).server
    assert (cfg.host, cfg.port, cfg.max_inputs_per_request) == ("127.0.0.1", 9001, 2048)
    assert cfg.max_chars_per_input == 100_000
    monkeypatch.delenv("PE_KEY_FOR_TEST", raising=False)
    with pytest.raises(ValueError, match="PE_KEY_FOR_TEST"):
        cfg.resolved_api_key()
    monkeypatch.setenv("PE_KEY_FOR_TEST", "s3cret")
    assert cfg.resolved_api_key() == "s3cret"
    assert "s3cret" not in repr(ServerConfig(api_key="s3cret"))
    for bad in (
        {"prot": 1},
        {"api_key": "a", "api_key_env": "B"},
        {"max_inputs_per_request": 10, "max_queued_inputs": 5},
        {"default_kind": "passage"},
        {"port": 0},
    ):
        with pytest.raises(ValidationError):
            ServerConfig(**bad)


@pytest.mark.procs
def test_import_is_light_and_missing_extra_names_the_install():
    code = (
        "import sys, promptembed, promptembed.config\n"
        "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules\n"
        "sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import promptembed.server\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'promptembed[server]'" in out.stdout, out.stdout + out.stderr


@pytest.mark.procs
def test_openapi_schema_documents_the_errors(live):
    schema = httpx.get(f"{live.base}/openapi.json").json()
    post = schema["paths"]["/v1/embeddings"]["post"]
    assert {"200", "400", "401", "413", "429", "500", "503"} == set(post["responses"])
    assert json.dumps(schema)  # serialisable as served


# -- hardening: no NaN on the wire, names not paths, no open port without a key, shutdown ------


class PoisonedEmbedder:
    """A real embedder whose pooled vector of the text "poison" is NaN (as corrupt weights)."""

    def __init__(self, model_dir: Path) -> None:
        from promptembed import PromptEmbedder

        self.inner = PromptEmbedder(str(model_dir), device="cpu")
        real = self.inner._compute

        def compute(route, texts, batch_size, bar):
            out = real(route, texts, batch_size, bar)
            out[[i for i, t in enumerate(texts) if t == "poison"]] = np.nan
            return out

        self.inner._compute = compute
        self.config = self.inner.config
        self.dimension = self.inner.dimension
        self.count_tokens = self.inner.count_tokens

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        time.sleep(0.05)  # long enough for the concurrent requests to share a batch
        return self.inner.embed(texts, kind=kind)


@pytest.mark.procs
def test_nan_vector_is_a_json_500_for_its_request_only(model_dirs, ref):
    cfg = server_config(model_dirs["llama"], max_batch_wait_ms=300)
    srv = LiveServer(create_app(cfg, embedder=PoisonedEmbedder(model_dirs["llama"])))
    try:
        bodies = [{"input": ["fine", "poison"]}, {"input": ["also fine"]}]
        with ThreadPoolExecutor(2) as pool:
            bad, good = pool.map(lambda b: _post(srv.base, b), bodies)
        assert bad.status_code == 500 and bad.headers["content-type"] == "application/json"
        error = json.loads(bad.text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["error"]
        assert error["code"] == "non_finite_embedding" and "input[1]" in error["message"]
        assert error["type"] == "server_error"
        assert good.status_code == 200, good.text  # shared the batch, answered all the same
        got = np.array(good.json()["data"][0]["embedding"])
        np.testing.assert_allclose(got, ref.embed("also fine"), atol=1e-6)
        assert health(srv.base)["batches"] >= 1
    finally:
        srv.stop()


def test_health_and_models_show_the_name_not_the_path(model_dirs):
    from fastapi.testclient import TestClient

    cfg = {"embedder": {"model": str(model_dirs["llama"]), "device": "cpu"}}
    with TestClient(create_app(cfg)) as client:
        body = client.get("/health").text
        assert json.loads(body)["model"] == model_dirs["llama"].name
        assert str(model_dirs["llama"].parent) not in body
        assert client.get("/v1/models").json()["data"][0]["id"] == model_dirs["llama"].name


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_binding_beyond_loopback_needs_a_key_or_insecure(host):
    with pytest.raises(ValueError, match="--insecure"):
        ServerConfig(host=host).check_binding()
    ServerConfig(host=host, insecure=True).check_binding()
    ServerConfig(host=host, api_key="k").check_binding()
    ServerConfig(host=host, api_key_env="SOME_VAR").check_binding()
    for local in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        ServerConfig(host=local).check_binding()


def test_cli_serve_refuses_open_host_without_key_in_one_line(model_dirs):
    from typer.testing import CliRunner

    from promptembed.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--model", str(model_dirs["llama"]), "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2, result.output
    assert "--insecure" in result.output and "Traceback" not in result.output


SLOW_SERVER = """
import sys, time
from promptembed import PromptEmbedder
from promptembed.server import run

class Slow:
    def __init__(self, inner):
        self.inner, self.config, self.dimension = inner, inner.config, inner.dimension
        self.count_tokens = inner.count_tokens

    def embed(self, texts, *, kind="document"):
        time.sleep(0.5)  # a batch of long inputs
        return self.inner.embed(texts, kind=kind)

model, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = {"port": port, "api_key": key, "graceful_shutdown_s": 1.0, "log_level": "warning",
          "max_inputs_per_request": 2, "max_batch_inputs": 2, "max_batch_wait_ms": 0}
run({"embedder": {"model": model, "device": "cpu"}, "server": server},
    embedder=Slow(PromptEmbedder(model, device="cpu")))
"""


@pytest.mark.procs
def test_sigterm_with_a_full_queue_gives_only_200s_and_openai_503s(model_dirs, tmp_path):
    port, grace = free_port(), 1.0
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(model_dirs["llama"]), str(port), KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(proc, base)
        requests = 16  # 16 batches of 0.5 s: far more than the 1 s grace period
        with ThreadPoolExecutor(requests) as pool:
            futures = [
                pool.submit(_post, base, {"input": [f"request {i} a", f"request {i} b"]})
                for i in range(requests)
            ]
            deadline = time.monotonic() + 30
            while health(base)["requests"] < requests:  # all accepted (most still queued)
                assert time.monotonic() < deadline, "requests were not queued"
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            answers = [f.result(timeout=30) for f in futures]
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - stopped_at
        assert took < grace + 4, f"exited {took:.1f} s after SIGTERM (grace {grace} s)"
        assert proc.returncode in (0, -signal.SIGTERM), out[-3000:]
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) == {200, 503}, statuses
        for r in answers:
            assert r.headers["content-type"] == "application/json"
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                error = r.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["code"] == "shutting_down" and error["type"] == "server_error"
            else:
                assert len(r.json()["data"]) == 2
        assert "Cancel" not in out and "Traceback" not in out, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
