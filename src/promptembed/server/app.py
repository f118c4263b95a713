"""The FastAPI app: validation, limits, API key, rendering, lifespan and `run`."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptembed.config import Config, ServerConfig, load_config
from promptembed.embedder import NonFiniteEmbeddingError, check_texts
from promptembed.server.batcher import DynamicBatcher, Embedder, QueueFullError, ShuttingDownError
from promptembed.server.schemas import (
    APIError,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    document_server,
    error_response,
)

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_SHUTDOWN_MARGIN_S = 2.0


class _BodyTooLargeError(Exception):
    """A request body grew past ``max_request_bytes`` while it was read."""


# -- request validation and rendering -------------------------------------------------------


def _validate_inputs(request: EmbeddingRequest, limits: ServerConfig, dimension: int) -> list[str]:
    texts = [request.input] if isinstance(request.input, str) else list(request.input)
    # Over a limit is 400, as OpenAI answers and as the schema (which carries the limits)
    # promises; 413 is kept for a body too large to read.
    if len(texts) > limits.max_inputs_per_request:
        raise APIError(
            400,
            f"too many inputs: {len(texts)} > max_inputs_per_request="
            f"{limits.max_inputs_per_request}; split the request",
            param="input",
            code="too_many_inputs",
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars_per_input:
            raise APIError(
                400,
                f"input[{i}] has {len(text)} characters > max_chars_per_input="
                f"{limits.max_chars_per_input}",
                param="input",
                code="input_too_long",
            )
    try:
        check_texts(texts)  # the core's own validation: what the tokenizer cannot encode
    except ValueError as error:
        message = str(error).replace("texts[", "input[", 1)
        raise APIError(400, message, param="input", code="invalid_unicode") from None
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
    # allow_nan=False: a NaN that got this far is a 500 in JSON, never an invalid body.
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


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

_ERROR_TEXTS = {
    400: "Invalid request (malformed JSON, a field the schema refuses, token ids, "
    "dimensions, over max_inputs_per_request or max_chars_per_input, invalid Unicode)",
    401: "Missing or wrong API key",
    404: "No such model: this server serves one",
    413: "Request body larger than max_request_bytes",
    429: "Queue full: retry after `Retry-After` seconds",
    500: "Internal error (e.g. a vector that is not finite: NaN or inf)",
    503: "Shutting down: retry after `Retry-After` seconds (on another replica)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the error answers an operation can give."""
    return {s: {"model": ErrorResponse, "description": _ERROR_TEXTS[s]} for s in statuses}


def public_name(spec: str) -> str:
    """The model's name as shown to clients: a local path shows its last part only.

    Example:
        >>> public_name("/home/me/models/tiny-llama"), public_name("gemma-3-270m")
        ('tiny-llama', 'gemma-3-270m')

    """
    path = Path(spec).expanduser()
    if spec.startswith((".", "/", "~")) or path.exists():
        return path.name or spec
    return spec


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
        spec = getattr(getattr(model, "config", None), "model", None) or cfg.embedder.model
        served = limits.model_name or public_name(spec)
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
            model=served,
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

    def begin_shutdown() -> None:
        """Called as the server stops listening: what cannot finish in time gets 503."""
        if "batcher" in state:
            state["batcher"].begin_shutdown(limits.graceful_shutdown_s)

    app.state.begin_shutdown = begin_shutdown
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None and "dimension" in state:  # known once started
            schema = document_server(generated(), limits, state["dimension"], api_key is not None)
            app.openapi_schema = schema
        return app.openapi_schema or generated()

    app.openapi = openapi  # type: ignore[method-assign]

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
        if loc[:1] == ["input"] and _token_ids(getattr(exc, "body", None)):
            return error_response(
                400,
                "token-id input is not supported: send text (a string or a list of strings). "
                "With LangChain's OpenAIEmbeddings pass check_embedding_ctx_length=False.",
                param="input",
                code="unsupported_input",
            )
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

    @app.get("/v1/models", response_model=ModelList, responses=_errors(401), tags=["openai"])
    async def list_models() -> ModelList:
        """The one served model, in OpenAI's list shape."""
        return ModelList(data=[_card()])

    @app.get(
        "/v1/models/{model_id:path}",
        response_model=ModelCard,
        responses=_errors(401, 404),
        tags=["openai"],
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
        responses=_errors(400, 401, 413, 429, 500, 503),
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
        except NonFiniteEmbeddingError as error:
            message = str(error).replace("texts[", "input[", 1)
            raise APIError(500, message, type="server_error", code="non_finite_embedding") from None
        render = (vectors, body.encoding_format or "float", state["model"], tokens)
        if vectors.size > 65_536:  # big answers serialise off the event loop
            content = await asyncio.to_thread(_render, *render)
        else:
            content = _render(*render)
        return Response(content, media_type="application/json")

    app.add_middleware(_Guard, api_key=api_key, max_bytes=limits.max_request_bytes)
    return app


def _token_ids(body: Any) -> bool:
    """Whether a request body's ``input`` is token ids (ints or lists of ints)."""
    raw = body.get("input") if isinstance(body, dict) else None
    return isinstance(raw, list) and any(isinstance(x, (int, list)) for x in raw)


def _version() -> str:
    from promptembed import __version__

    return __version__


def run(
    config: Config | dict[str, Any] | str | Path | None = None,
    *,
    embedder: Embedder | None = None,
) -> None:
    """Serve ``config`` with uvicorn until interrupted (Ctrl-C or SIGTERM drains first).

    On shutdown the server stops listening and keeps answering what it accepted for
    ``server.graceful_shutdown_s`` seconds; whatever is still queued or running then is
    answered 503 (OpenAI's error shape, ``Retry-After``) and the process exits.

    Args:
        config: A Config, a dict or a TOML path; ``[server]`` sets host, port and limits.
        embedder: An already built embedder to serve (as in :func:`create_app`).

    Example:
        >>> run("promptembed.toml")  # doctest: +SKIP

    """
    from promptembed._optional import require

    uvicorn = require("uvicorn", "server")

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            app.state.begin_shutdown()  # before uvicorn starts waiting on open requests
            await super().shutdown(sockets)

    cfg = load_config(config) if config is not None else Config()
    cfg.server.check_binding()
    app = create_app(cfg, embedder=embedder)
    grace = cfg.server.graceful_shutdown_s
    server = _Server(
        uvicorn.Config(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            log_level=cfg.server.log_level,
            # Our batcher answers 503 at `grace`; uvicorn's own cut (a plain-text 500)
            # only backs it up, for a request stuck outside the batcher.
            timeout_graceful_shutdown=grace + _SHUTDOWN_MARGIN_S,
            lifespan="on",
        )
    )
    server.run()
