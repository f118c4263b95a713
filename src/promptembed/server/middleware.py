"""The guard middleware: API key and body size, checked before any body is parsed."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from promptembed.server.schemas import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLargeError(Exception):
    """A request body grew past ``max_request_bytes`` while it was read."""


class Guard:
    """Pure-ASGI middleware: checks the API key and bounds the body, before parsing.

    Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, so that a body is counted
    as it streams in: one without a ``Content-Length`` (chunked) is cut off at
    ``max_bytes`` too, and answered 413 unless the app has started answering already.
    With an API key, only ``/v1`` paths need it (``/health`` and the docs stay open).

    Args:
        app: The ASGI app to guard.
        api_key: The bearer token ``/v1`` requests must send, or None for no check.
        max_bytes: Largest request body accepted.

    Example:
        >>> app.add_middleware(Guard, api_key="secret", max_bytes=1 << 20)  # doctest: +SKIP

    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key is not None else None
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse (401, 400, 413) or pass the request on with its body bounded."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if not self._authorized(scope, headers):
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
        await self._bounded(scope, receive, send)

    def _authorized(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """Whether the request may pass: no key set, a path outside /v1, or the right key."""
        if self.api_key is None or not scope.get("path", "").startswith("/v1"):
            return True
        given = headers.get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app on a body cut off at ``max_bytes`` (413 unless it already answered)."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyTooLargeError:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body larger than max_request_bytes={self.max_bytes}",
            code="request_too_large",
        )
        await response(scope, receive, send)
