"""ASGI middleware: correlation id, request-size limit, HTTP metrics by route template.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming bodies are limited while they arrive and the
evaluation hot path pays as little as possible.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitoring import metrics

__all__ = ["RequestContextMiddleware", "current_request_id"]

log = structlog.get_logger("api.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    ctx = structlog.contextvars.get_contextvars()
    value = ctx.get("correlation_id")
    return value if isinstance(value, str) else None


class _BodyTooLarge(Exception):
    pass


def _too_large_body(limit: int) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"request body exceeds {limit} bytes",
                "details": [],
            }
        }
    )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _json_bodies(scope)
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(b"x-request-id", b"").decode("latin-1").strip()
        request_id = raw_id if _REQUEST_ID.match(raw_id) else str(uuid.uuid4())
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._send_413(send, request_id)
            self._observe(scope, 413, 0.0)
            return

        status_holder = {"status": 500}
        started = time.perf_counter()
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if not response_started:
                await self._send_413(send, request_id)
            status_holder["status"] = 413
        finally:
            self._observe(scope, status_holder["status"], time.perf_counter() - started)

    async def _send_413(self, send: Send, request_id: str) -> None:
        body = _too_large_body(self.max_body_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = _route_template(scope)
        metrics.observe_http(route, scope.get("method", "GET"), status, seconds)


def _json_bodies(scope: Scope) -> Scope:
    """Every body of the API is JSON: ``curl -d '{...}'`` (form content type by default) or a client that
    sends no content type is read as JSON rather than refused with a baffling validation error."""
    if not scope.get("path", "").startswith("/api/") or scope.get("method") not in (
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    ):
        return scope
    headers = list(scope.get("headers") or [])
    kept = [(k, v) for k, v in headers if k != b"content-type"]
    declared = next((v for k, v in headers if k == b"content-type"), b"")
    if declared.split(b";")[0].strip().endswith(b"json"):
        return scope
    return {**scope, "headers": [*kept, (b"content-type", b"application/json")]}


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/flags/{key}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app: Any = scope.get("app")
    router = getattr(app, "router", None)
    for candidate in getattr(router, "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", metrics.UNMATCHED_ROUTE))
    return metrics.UNMATCHED_ROUTE
