"""The routes: health, the served model, and OpenAI's embeddings endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from promptembed._util.inputs import check_texts
from promptembed.config import ServerConfig
from promptembed.engine.embedder import NonFiniteEmbeddingError
from promptembed.engine.remote import IDENTITY_HEADER
from promptembed.server.batcher import DynamicBatcher, Embedder, QueueFullError, ShuttingDownError
from promptembed.server.errors import error_responses
from promptembed.server.schemas import (
    APIError,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    ModelCard,
    ModelList,
)

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Served:
    """What the routes serve, set as ``app.state.served`` once the app has started.

    Example:
        >>> app.state.served.model, app.state.served.dimension  # doctest: +SKIP
        ('tiny-llama', 64)

    """

    embedder: Embedder
    batcher: DynamicBatcher
    limits: ServerConfig
    model: str
    """The model's name as clients see it."""
    dimension: int
    created: int
    """When it started serving (Unix seconds), as OpenAI's model cards show."""
    published: dict[str, Any] | None = None
    """The embedder's identity for clients (:func:`~promptembed.engine.remote.publication`);
    None for an embedder without one (a stand-in that has no weights fingerprint)."""


def served(request: Request) -> Served:
    """The app's :class:`Served` (None before startup, so that a route then answers 500)."""
    return request.app.state.served


Serving = Annotated[Served, Depends(served)]

router = APIRouter()


@router.get("/health", response_model=Health, tags=["server"])
async def health(state: Serving) -> Health:
    """Liveness, the served model and the batching counters."""
    batcher = state.batcher
    s = batcher.stats
    return Health(
        model=state.model,
        dimension=state.dimension,
        queued_inputs=batcher.queued_inputs,
        max_queued_inputs=batcher.max_queued_inputs,
        requests=s.requests,
        batches=s.batches,
        batched_inputs=s.batched_inputs,
    )


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401), tags=["openai"])
async def list_models(state: Serving) -> ModelList:
    """The one served model, in OpenAI's list shape."""
    return ModelList(data=[_card(state)])


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses=error_responses(401, 404),
    tags=["openai"],
)
async def get_model(model_id: str, state: Serving) -> ModelCard:
    """The served model, or 404 for any other id."""
    if model_id != state.model:
        raise APIError(
            404,
            f"model {model_id!r} not found; this server serves {state.model!r}",
            type="not_found_error",
            param="model",
            code="model_not_found",
        )
    return _card(state)


def _card(state: Served) -> ModelCard:
    return ModelCard(id=state.model, created=state.created, promptembed=state.published)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    responses=error_responses(400, 401, 413, 429, 500, 503),
    tags=["openai"],
)
async def create_embeddings(body: EmbeddingRequest, state: Serving) -> Response:
    """Embed a text or a list of texts, in OpenAI's request and response shapes."""
    batcher, limits = state.batcher, state.limits
    texts = validate_inputs(body, limits, state.dimension)
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
    rendered = (vectors, body.encoding_format or "float", state.model, tokens)
    if vectors.size > 65_536:  # big answers serialise off the event loop
        content = await asyncio.to_thread(render, *rendered)
    else:
        content = render(*rendered)
    # Which identity made these vectors: a client checks it against the one it opened with.
    served_by = {IDENTITY_HEADER: state.published["key"]} if state.published else None
    return Response(content, media_type="application/json", headers=served_by)


def validate_inputs(request: EmbeddingRequest, limits: ServerConfig, dimension: int) -> list[str]:
    """The request's texts, or an :class:`APIError` 400 naming the limit or field broken."""
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


def render(
    vectors: np.ndarray, encoding: Literal["float", "base64"], model: str, tokens: int
) -> bytes:
    """OpenAI's embeddings response body, as JSON bytes (vectors as floats or base64)."""
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
