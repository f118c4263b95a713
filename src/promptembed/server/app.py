"""The app factory: config, lifespan (load, batch, drain), OpenAPI document, and `run`.

The routes are in :mod:`~promptembed.server.routes`, the error handlers in
:mod:`~promptembed.server.errors` and the API-key and body-size guard in
:mod:`~promptembed.server.middleware`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from promptembed import __version__
from promptembed._util.optional import require
from promptembed.config import Config, ServerConfig, load_config
from promptembed.engine.embedder import PromptEmbedder
from promptembed.engine.remote import publication
from promptembed.server.batcher import DynamicBatcher, Embedder
from promptembed.server.errors import install_error_handlers
from promptembed.server.middleware import Guard
from promptembed.server.routes import Served, router
from promptembed.server.schemas import document_server

logger = logging.getLogger(__name__)

_SHUTDOWN_MARGIN_S = 2.0


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
    app = FastAPI(
        title="promptembed",
        summary="OpenAI-compatible sentence embeddings from a generative LLM through prompts.",
        version=__version__,
        lifespan=_lifespan(cfg, embedder),
    )
    app.state.served = None  # a Served once the lifespan has started

    def begin_shutdown() -> None:
        """Called as the server stops listening: what cannot finish in time gets 503."""
        if app.state.served is not None:
            app.state.served.batcher.begin_shutdown(limits.graceful_shutdown_s)

    app.state.begin_shutdown = begin_shutdown
    _document_limits(app, limits, secured=api_key is not None)
    install_error_handlers(app, limits.max_request_bytes)
    app.include_router(router)
    app.add_middleware(Guard, api_key=api_key, max_bytes=limits.max_request_bytes)
    return app


def _lifespan(
    cfg: Config, embedder: Embedder | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load the model (unless ``embedder``), start the batcher; drain it on shutdown."""
    limits = cfg.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder if embedder is not None else await asyncio.to_thread(_load_embedder, cfg)
        spec = getattr(getattr(model, "config", None), "model", None) or cfg.embedder.model
        batcher = DynamicBatcher(
            model,
            max_queued_inputs=limits.max_queued_inputs,
            max_batch_inputs=limits.max_batch_inputs,
            max_batch_wait_ms=limits.max_batch_wait_ms,
            count_tokens=_token_counter(model),
        )
        batcher.start()
        served = Served(
            embedder=model,
            batcher=batcher,
            limits=limits,
            model=limits.model_name or public_name(spec),
            dimension=int(model.dimension),
            created=int(time.time()),
            published=_publication(model, limits),
        )
        app.state.served = served
        logger.info("serving %s (dimension %d)", served.model, served.dimension)
        try:
            yield
        finally:
            logger.info("draining %d queued inputs", batcher.queued_inputs)
            await batcher.close()

    return lifespan


def _document_limits(app: FastAPI, limits: ServerConfig, *, secured: bool) -> None:
    """Make ``app.openapi()`` carry the served limits and dimension, once they are known."""
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        served = app.state.served
        if app.openapi_schema is None and served is not None:  # known once started
            app.openapi_schema = document_server(generated(), limits, served.dimension, secured)
        return app.openapi_schema or generated()

    app.openapi = openapi  # type: ignore[method-assign]


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


def _publication(embedder: Embedder, limits: ServerConfig) -> dict[str, Any] | None:
    """The served embedder's identity for client mode, if it has one to publish.

    A loaded :class:`PromptEmbedder` has; a stand-in without a config, weights
    fingerprint and dtype (a test double, a wrapper) publishes none, and clients then
    refuse the server rather than guess.
    """
    if not all(hasattr(embedder, a) for a in ("config", "fingerprint", "torch_dtype")):
        return None
    kept = ("max_inputs_per_request", "max_chars_per_input", "max_request_bytes")
    return publication(
        embedder,  # type: ignore[arg-type]  # checked above
        int(embedder.dimension),
        {name: getattr(limits, name) for name in kept},
    )


def _load_embedder(config: Config) -> Embedder:
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
