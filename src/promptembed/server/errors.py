"""Error handlers: every error the app gives is OpenAI's shape, and documented in OpenAPI."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptembed.server.middleware import BodyTooLargeError
from promptembed.server.schemas import APIError, ErrorResponse, error_response

logger = logging.getLogger(__name__)

ERROR_TEXTS = {
    400: "Invalid request (malformed JSON, a field the schema refuses, token ids, "
    "dimensions, over max_inputs_per_request or max_chars_per_input, invalid Unicode)",
    401: "Missing or wrong API key",
    404: "No such model: this server serves one",
    413: "Request body larger than max_request_bytes",
    429: "Queue full: retry after `Retry-After` seconds",
    500: "Internal error (e.g. a vector that is not finite: NaN or inf)",
    503: "Shutting down: retry after `Retry-After` seconds (on another replica)",
}
"""What each error status means, as the OpenAPI document describes it."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the error answers an operation can give.

    Example:
        >>> error_responses(401)[401]["description"]
        'Missing or wrong API key'

    """
    return {s: {"model": ErrorResponse, "description": ERROR_TEXTS[s]} for s in statuses}


def install_error_handlers(app: FastAPI, max_request_bytes: int) -> None:
    """Answer API errors, invalid requests, HTTP errors and crashes in OpenAI's shape.

    ``max_request_bytes`` is named in the 413 of a body that outgrew it while FastAPI
    read it (the guard middleware cuts it off; FastAPI wraps that in an HTTP error).
    """

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLargeError):
            return error_response(
                413,
                f"request body larger than max_request_bytes={max_request_bytes}",
                code="request_too_large",
            )
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, str(exc.detail), kind, headers=headers)

    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _crash)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return exc.response()


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 (not FastAPI's 422) naming the first invalid field, as OpenAI answers."""
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


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path)
    return error_response(500, "internal server error", "server_error")


def _token_ids(body: Any) -> bool:
    """Whether a request body's ``input`` is token ids (ints or lists of ints)."""
    raw = body.get("input") if isinstance(body, dict) else None
    return isinstance(raw, list) and any(isinstance(x, (int, list)) for x in raw)
