"""An OpenAI-compatible embeddings server with dynamic batching (FastAPI + uvicorn).

``promptembed serve --config promptembed.toml`` runs it; any OpenAI embeddings client
works unchanged (the official ``openai`` package, LangChain's ``OpenAIEmbeddings``,
LlamaIndex's and Chroma's OpenAI embedding functions).

Endpoints:
    * ``POST /v1/embeddings``: OpenAI's request and response shapes; ``encoding_format``
      ``float`` or ``base64``; an extension field ``kind`` (``document`` | ``query``)
      picks the template route.
    * ``GET /v1/models``, ``GET /v1/models/{model}``: the one served model.
    * ``GET /health``: liveness, model, dimension and batching counters.
    * ``GET /openapi.json`` (and ``/docs``): the schema.

Concurrent requests are queued and gathered into shared batches by one batcher task;
the model runs on one dedicated thread, never on the event loop. The queue is bounded
(``max_queued_inputs``); beyond it requests get 429 with ``Retry-After``. Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

Needs the ``server`` extra: ``pip install 'promptembed[server]'``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "promptembed.server needs FastAPI and uvicorn: pip install 'promptembed[server]'"
    ) from error

from pydantic import BaseModel, ConfigDict, Field

from promptembed.config import Config, ServerConfig, load_config

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

__all__ = [
    "APIError",
    "DynamicBatcher",
    "QueueFullError",
    "create_app",
    "run",
]

logger = logging.getLogger(__name__)

Kind = Literal["document", "query"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Embedder(Protocol):
    """What the server needs from an embedder (``PromptEmbedder`` fits)."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> np.ndarray:
        """Embed texts in order, shape ``(n, dimension)``."""
        ...


# -- errors -----------------------------------------------------------------------------


class APIError(Exception):
    """An error answered in OpenAI's shape ``{"error": {...}}``.

    Example:
        >>> APIError(400, "input must not be empty", param="input").status
        400

    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response carrying this error."""
        return error_response(
            self.status, self.message, self.type, self.param, self.code, self.headers
        )


class QueueFullError(Exception):
    """The batcher holds ``max_queued_inputs`` texts already: retry later."""


class ShuttingDownError(Exception):
    """The batcher is closing and accepts no new work."""


class _BodyTooLargeError(Exception):
    """A request body grew past ``max_request_bytes`` while it was read."""


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in OpenAI's error shape."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- wire models (they also make the OpenAPI schema) ------------------------------------


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; unknown fields are ignored, as clients vary."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"input": ["A man is playing a guitar.", "一个男人在弹吉他。"], "model": "m"},
                {"input": "one text", "encoding_format": "base64", "kind": "query"},
            ]
        },
    )

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts. Token-id arrays are rejected (400): "
        "this server tokenises with its own model's tokenizer."
    )
    model: str | None = Field(
        None, description="Accepted for compatibility; the server serves one model."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        "float", description="`float` lists (also when null), or `base64` of little-endian float32."
    )
    dimensions: int | None = Field(
        None, description="Must equal the model's dimension if given (no truncation)."
    )
    user: str | None = Field(None, description="Accepted and ignored.")
    kind: Kind | None = Field(
        None,
        description="promptembed extension: `document` or `query` template route; "
        "default from the server config.",
    )


class EmbeddingItem(BaseModel):
    """One vector of the response."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Token counts of the inputs (the model's tokenizer, without the template)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """OpenAI's embeddings response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    """The inside of an OpenAI error."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape."""

    error: ErrorBody


class ModelCard(BaseModel):
    """One entry of ``/v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "promptembed"


class ModelList(BaseModel):
    """The ``/v1/models`` listing."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """``/health``: status, model and batching counters."""

    status: Literal["ok"] = "ok"
    model: str
    dimension: int
    queued_inputs: int
    max_queued_inputs: int
    requests: int
    batches: int
    batched_inputs: int


# -- dynamic batching ---------------------------------------------------------------------


@dataclass
class _Work:
    texts: list[str]
    kind: Kind
    future: asyncio.Future[tuple[np.ndarray, int]]


@dataclass
class BatchStats:
    """Counters of the batcher (shown by ``/health``)."""

    requests: int = 0
    batches: int = 0
    batched_inputs: int = 0
    largest_batch: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=256))


class DynamicBatcher:
    """Gathers concurrent requests into shared batches for one embedder.

    One asyncio task collects queued requests (whole requests, up to
    ``max_batch_inputs`` texts, waiting at most ``max_batch_wait_ms`` for more) and runs
    each batch on a single dedicated thread, so the event loop never embeds. The number
    of accepted, unanswered texts is bounded by ``max_queued_inputs``.

    Args:
        embedder: Anything with ``embed(texts, kind=...)`` and ``dimension``.
        max_queued_inputs: Bound on accepted and unanswered texts.
        max_batch_inputs: Max texts per embedding call (a larger request runs alone).
        max_batch_wait_ms: Wait for more requests before running a batch that is not full.
        count_tokens: ``texts -> token counts`` run on the model thread, or None for 0s.

    Example:
        >>> async def main(embedder):  # doctest: +SKIP
        ...     batcher = DynamicBatcher(embedder)
        ...     batcher.start()
        ...     vectors, tokens = await batcher.submit(["a text"], "document")
        ...     await batcher.close()

    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_queued_inputs: int = 8192,
        max_batch_inputs: int = 256,
        max_batch_wait_ms: float = 5.0,
        count_tokens: Callable[[list[str]], int] | None = None,
    ) -> None:
        self.embedder = embedder
        self.max_queued_inputs = max_queued_inputs
        self.max_batch_inputs = max_batch_inputs
        self.max_batch_wait = max_batch_wait_ms / 1000
        self.count_tokens = count_tokens
        self.stats = BatchStats()
        self._pending: deque[_Work] = deque()
        self._queued_inputs = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptembed-embed")

    @property
    def queued_inputs(self) -> int:
        """Texts accepted and not yet answered."""
        return self._queued_inputs

    def start(self) -> None:
        """Start the batcher task on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="promptembed-batch")

    async def submit(self, texts: list[str], kind: Kind) -> tuple[np.ndarray, int]:
        """Queue texts and wait for ``(vectors, token_count)``.

        Raises:
            QueueFullError: If accepting them would exceed ``max_queued_inputs``.
            ShuttingDownError: If the batcher is closing.

        """
        if self._closing or self._task is None or self._wakeup is None:
            raise ShuttingDownError("the server is shutting down")
        if self._task.done():  # pragma: no cover - the batcher task never ends by itself
            raise ShuttingDownError("the batcher has stopped")
        if self._queued_inputs + len(texts) > self.max_queued_inputs:
            raise QueueFullError(
                f"the server queue is full ({self._queued_inputs} of {self.max_queued_inputs} "
                f"inputs waiting); retry later"
            )
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Work(texts, kind, future))
        self._queued_inputs += len(texts)
        self.stats.requests += 1
        self._wakeup.set()
        try:
            # Shielded: a cancelled request must not cancel a batch it shares.
            return await asyncio.shield(future)
        finally:
            if not future.done():
                future.cancel()

    async def close(self) -> None:
        """Stop accepting work, finish everything queued, then stop the thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_batch_wait
            while not self._closing and self._pending_inputs() < self.max_batch_inputs:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:  # not the builtin on Python 3.10
                    break
            batch = self._take()
            await self._execute(batch, loop)

    def _pending_inputs(self) -> int:
        return sum(len(w.texts) for w in self._pending)

    def _take(self) -> list[_Work]:
        batch: list[_Work] = []
        size = 0
        while self._pending:
            work = self._pending[0]
            if batch and size + len(work.texts) > self.max_batch_inputs:
                break
            self._pending.popleft()
            if work.future.done():  # the client went away before its turn
                self._queued_inputs -= len(work.texts)
                continue
            batch.append(work)
            size += len(work.texts)
        return batch

    async def _execute(self, batch: list[_Work], loop: asyncio.AbstractEventLoop) -> None:
        if not batch:
            return
        size = sum(len(w.texts) for w in batch)
        try:
            results = await loop.run_in_executor(self._executor, self._embed_batch, batch)
        except Exception as error:
            logger.exception("embedding a batch of %d inputs failed", size)
            for work in batch:
                if not work.future.done():
                    work.future.set_exception(error)
        else:
            for work, result in zip(batch, results):
                if not work.future.done():
                    work.future.set_result(result)
        finally:
            self._queued_inputs -= size
            self.stats.batches += 1
            self.stats.batched_inputs += size
            self.stats.largest_batch = max(self.stats.largest_batch, size)
            self.stats.recent.append(size)

    def _embed_batch(self, batch: list[_Work]) -> list[tuple[np.ndarray, int]]:
        """Runs on the model thread: one ``embed`` call per template route."""
        results: list[tuple[np.ndarray, int] | None] = [None] * len(batch)
        for kind in ("document", "query"):
            members = [i for i, w in enumerate(batch) if w.kind == kind]
            if not members:
                continue
            texts = [t for i in members for t in batch[i].texts]
            vectors = self.embedder.embed(texts, kind=kind)
            start = 0
            for i in members:
                n = len(batch[i].texts)
                tokens = self.count_tokens(batch[i].texts) if self.count_tokens else 0
                results[i] = (vectors[start : start + n], tokens)
                start += n
        return [r for r in results if r is not None]


# -- request validation and rendering -------------------------------------------------------


def _validate_inputs(request: EmbeddingRequest, limits: ServerConfig, dimension: int) -> list[str]:
    raw = request.input
    texts: list[str]
    if isinstance(raw, str):
        texts = [raw]
    else:
        if not raw:
            raise APIError(400, "'input' must not be an empty list", param="input")
        if not all(isinstance(t, str) for t in raw):
            raise APIError(
                400,
                "token-id input is not supported: send text (a string or a list of strings). "
                "With LangChain's OpenAIEmbeddings pass check_embedding_ctx_length=False.",
                param="input",
                code="unsupported_input",
            )
        texts = list(raw)  # type: ignore[arg-type]
    if len(texts) > limits.max_inputs_per_request:
        raise APIError(
            413,
            f"too many inputs: {len(texts)} > max_inputs_per_request="
            f"{limits.max_inputs_per_request}; split the request",
            param="input",
            code="too_many_inputs",
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars_per_input:
            raise APIError(
                413,
                f"input[{i}] has {len(text)} characters > max_chars_per_input="
                f"{limits.max_chars_per_input}",
                param="input",
                code="input_too_long",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise APIError(
                400,
                f"input[{i}] is not valid Unicode text (lone surrogate at {error.start})",
                param="input",
                code="invalid_unicode",
            ) from None
    if request.dimensions is not None and request.dimensions != dimension:
        raise APIError(
            400,
            f"dimensions={request.dimensions} is not supported: this model's vectors have "
            f"{dimension} dimensions and are not truncatable; omit 'dimensions'",
            param="dimensions",
            code="unsupported_dimensions",
        )
    return texts


def _render(
    vectors: np.ndarray, encoding: Literal["float", "base64"], model: str, tokens: int
) -> bytes:
    import numpy as np

    if encoding == "base64":
        little = np.ascontiguousarray(vectors, dtype="<f4")
        items: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        items = vectors.astype(np.float32).tolist()
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(body, separators=(",", ":")).encode()


# -- guard middleware: API key and body size, before any body is read ---------------------


class _Guard:
    """Pure-ASGI middleware: checks the API key and bounds the body, before parsing."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key is not None else None
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path", "").startswith("/v1"):
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            ok = scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)
            if not ok:
                response = error_response(
                    401,
                    "invalid or missing API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            response = error_response(400, "invalid Content-Length header", code="bad_request")
            await response(scope, receive, send)
            return
        if length is not None and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _BodyTooLargeError:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body larger than max_request_bytes={self.max_bytes}",
            code="request_too_large",
        )
        await response(scope, receive, send)


# -- the app ------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in [
        (400, "Invalid request (malformed JSON, wrong field, token ids, dimensions)"),
        (401, "Missing or wrong API key"),
        (413, "Over a limit (inputs per request, characters per input, body size)"),
        (429, "Queue full: retry after `Retry-After` seconds"),
    ]
}


def _load_embedder(config: Config) -> Embedder:
    from promptembed.embedder import PromptEmbedder

    return PromptEmbedder(config=config.embedder)


def _token_counter(embedder: Embedder) -> Callable[[list[str]], int] | None:
    counter = getattr(embedder, "count_tokens", None)
    if callable(counter):  # PromptEmbedder's own, which serialises tokenizer use
        return counter
    tokenizer = getattr(embedder, "tokenizer", None)
    if tokenizer is None:
        return None

    def count(texts: list[str]) -> int:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(len(x) for x in ids)

    return count


def create_app(
    config: Config | dict[str, Any] | str | Path | None = None,
    *,
    embedder: Embedder | None = None,
) -> FastAPI:
    """Build the FastAPI app; the embedder loads at startup unless one is given.

    Args:
        config: A :class:`~promptembed.config.Config`, a dict or a TOML path; its
            ``[embedder]`` table builds the model and its ``[server]`` table sets limits.
        embedder: An already built embedder to serve instead (its config wins for the
            model name).

    Returns:
        The app; run it with uvicorn (``run`` does) so that its lifespan starts and
        drains the batcher.

    Raises:
        ValueError: If ``server.api_key_env`` names an unset variable.

    Example:
        >>> app = create_app({"server": {"max_inputs_per_request": 64}})  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP

    """
    cfg = load_config(config) if config is not None else Config()
    limits = cfg.server
    api_key = limits.resolved_api_key()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder if embedder is not None else await asyncio.to_thread(_load_embedder, cfg)
        served = limits.model_name or getattr(getattr(model, "config", None), "model", None)
        batcher = DynamicBatcher(
            model,
            max_queued_inputs=limits.max_queued_inputs,
            max_batch_inputs=limits.max_batch_inputs,
            max_batch_wait_ms=limits.max_batch_wait_ms,
            count_tokens=_token_counter(model),
        )
        batcher.start()
        state.update(
            embedder=model,
            batcher=batcher,
            model=served or cfg.embedder.model,
            dimension=int(model.dimension),
            created=int(time.time()),
        )
        logger.info("serving %s (dimension %d)", state["model"], state["dimension"])
        try:
            yield
        finally:
            logger.info("draining %d queued inputs", batcher.queued_inputs)
            await batcher.close()

    app = FastAPI(
        title="promptembed",
        summary="OpenAI-compatible sentence embeddings from a generative LLM through prompts.",
        version=_version(),
        lifespan=lifespan,
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            message = f"malformed JSON body: {first.get('ctx', {}).get('error', 'invalid')}"
            return error_response(400, message, code="invalid_json")
        where = ".".join(loc) or "body"
        message = f"invalid request: {where}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more errors)"
        return error_response(400, message, param=loc[0] if loc else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, _BodyTooLargeError):
            return error_response(
                413,
                f"request body larger than max_request_bytes={limits.max_request_bytes}",
                code="request_too_large",
            )
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, str(exc.detail), kind, headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal server error", "server_error")

    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        """Liveness, the served model and the batching counters."""
        batcher: DynamicBatcher = state["batcher"]
        s = batcher.stats
        return Health(
            model=state["model"],
            dimension=state["dimension"],
            queued_inputs=batcher.queued_inputs,
            max_queued_inputs=batcher.max_queued_inputs,
            requests=s.requests,
            batches=s.batches,
            batched_inputs=s.batched_inputs,
        )

    def _card() -> ModelCard:
        return ModelCard(id=state["model"], created=state["created"])

    @app.get("/v1/models", response_model=ModelList, responses=_ERRORS, tags=["openai"])
    async def list_models() -> ModelList:
        """The one served model, in OpenAI's list shape."""
        return ModelList(data=[_card()])

    @app.get(
        "/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERRORS, tags=["openai"]
    )
    async def get_model(model_id: str) -> ModelCard:
        """The served model, or 404 for any other id."""
        if model_id != state["model"]:
            raise APIError(
                404,
                f"model {model_id!r} not found; this server serves {state['model']!r}",
                type="not_found_error",
                param="model",
                code="model_not_found",
            )
        return _card()

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingResponse,
        responses=_ERRORS,
        tags=["openai"],
    )
    async def create_embeddings(body: EmbeddingRequest) -> Response:
        """Embed a text or a list of texts, in OpenAI's request and response shapes."""
        batcher: DynamicBatcher = state["batcher"]
        texts = _validate_inputs(body, limits, state["dimension"])
        try:
            vectors, tokens = await batcher.submit(texts, body.kind or limits.default_kind)
        except QueueFullError as error:
            raise APIError(
                429,
                str(error),
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(limits.retry_after_s)},
            ) from None
        except ShuttingDownError as error:
            raise APIError(
                503,
                str(error),
                type="server_error",
                code="shutting_down",
                headers={"Retry-After": str(limits.retry_after_s)},
            ) from None
        render = (vectors, body.encoding_format or "float", state["model"], tokens)
        if vectors.size > 65_536:  # big answers serialise off the event loop
            content = await asyncio.to_thread(_render, *render)
        else:
            content = _render(*render)
        return Response(content, media_type="application/json")

    app.add_middleware(_Guard, api_key=api_key, max_bytes=limits.max_request_bytes)
    return app


def _version() -> str:
    from promptembed import __version__

    return __version__


def run(config: Config | dict[str, Any] | str | Path | None = None) -> None:
    """Serve ``config`` with uvicorn until interrupted (Ctrl-C or SIGTERM drains first).

    Args:
        config: A Config, a dict or a TOML path; ``[server]`` sets host, port and limits.

    Example:
        >>> run("promptembed.toml")  # doctest: +SKIP

    """
    try:
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "promptembed serve needs FastAPI and uvicorn: pip install 'promptembed[server]'"
        ) from error
    cfg = load_config(config) if config is not None else Config()
    app = create_app(cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            log_level=cfg.server.log_level,
            timeout_graceful_shutdown=cfg.server.graceful_shutdown_s,
            lifespan="on",
        )
    )
    server.run()
