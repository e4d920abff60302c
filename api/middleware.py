"""ASGI middleware: correlation id, rate limits, request-size limit, request log, HTTP metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming bodies are limited while they arrive and the
evaluation hot path pays as little as possible. A body over the limit is ``413`` whether it was
declared (``Content-Length``) or sent chunked: the middleware answers as soon as the limit is passed
and drops whatever the application tries to send afterwards (its "error parsing the body").

Every request logs one ``http.request`` line (method, route template, status, duration, sizes,
principal, client; ``correlation_id`` is bound), with secrets and the configured personal context
attributes masked; successful evaluation requests are sampled at ``log_evaluation_sample_rate``.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Identified
from api.bodyguard import guarded, inspect_json, read_all, replay
from api.ratelimit import Verdict, classify_request
from monitoring import metrics
from monitoring.logging import mask_headers, mask_personal

__all__ = ["RequestContextMiddleware", "RequestLogPolicy", "current_request_id", "write_request_log"]

log = structlog.get_logger("api.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MIDDLEWARE_CODES = {413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests"}
# Bodies read as JSON although labelled otherwise (curl -d sends a form type; some clients text/plain).
_READ_AS_JSON = (b"", b"application/x-www-form-urlencoded", b"text/plain")
_LOGGED_HEADERS = frozenset({"user-agent", "content-type", "authorization", "cookie", "x-api-key"})


def current_request_id() -> str | None:
    ctx = structlog.contextvars.get_contextvars()
    value = ctx.get("correlation_id")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RequestLogPolicy:
    """What the request log writes: on/off, the sampling of evaluation requests, personal attributes."""

    enabled: bool = True
    evaluation_sample_rate: float = 1.0
    personal_attributes: frozenset[str] = field(default_factory=frozenset)


class _BodyTooLarge(Exception):
    pass


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": []}})


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = 1_048_576,
        log_policy: RequestLogPolicy | None = None,
        rate_limits: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.log_policy = log_policy or RequestLogPolicy(enabled=False)
        self.rate_limits = rate_limits

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
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        sizes = {"request": 0, "response": 0}
        rate_class = classify_request(
            scope.get("method", "GET"),
            scope.get("path", ""),
            scope.get("query_string", b"").decode("latin-1"),
        )
        verdict = await self._check_rate(scope, headers, rate_class)
        extra = [(b"x-request-id", request_id.encode())]
        if verdict is not None:
            extra.extend(verdict.headers())

        declared = headers.get(b"content-length")
        if verdict is not None and not verdict.allowed:
            message = f"rate limit of {verdict.rate_class} requests exceeded; retry later"
            status = await self._answer(send, 429, _error_body("too_many_requests", message), extra)
        elif declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            status = await self._answer(send, 413, self._too_large(), extra)
        elif _unsupported_media_type(scope):
            message = "send the body as JSON (Content-Type: application/json)"
            status = await self._answer(send, 415, _error_body("unsupported_media_type", message), extra)
        else:
            try:
                status = await self._run(scope, receive, send, extra, sizes)
            except Exception:  # answered 500 by Starlette's outermost handler; still measured and logged
                self._finish(scope, headers, 500, started, sizes, rate_class)
                raise
        self._finish(scope, headers, status, started, sizes, rate_class)

    def _finish(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        status: int,
        started: float,
        sizes: dict[str, int],
        rate_class: str | None,
    ) -> None:
        elapsed = time.perf_counter() - started
        if status in _MIDDLEWARE_CODES:
            metrics.record_error(_MIDDLEWARE_CODES[status], status)
        self._observe(scope, status, elapsed)
        self._log(scope, headers, status, elapsed, sizes, rate_class)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        sizes: dict[str, int],
    ) -> int:
        status_holder = {"status": 500}
        response_started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal refused, response_started
            message = await receive()
            if message["type"] == "http.request":
                sizes["request"] += len(message.get("body", b""))
                if sizes["request"] > self.max_body_bytes:
                    if not response_started and not refused:
                        refused = True
                        response_started = True
                        status_holder["status"] = 413
                        await self._answer(send, 413, self._too_large(), extra)
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 is answered; what the app makes of the aborted body is dropped
            if message["type"] == "http.response.start":
                response_started = True
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            elif message["type"] == "http.response.body":
                sizes["response"] += len(message.get("body", b""))
            await send(message)

        try:
            app_receive = await self._guard(scope, limited_receive, receive, send, extra)
            if app_receive is None:
                return 422
            await self.app(scope, app_receive, send_with_headers)
        except _BodyTooLarge:
            if not response_started:
                await self._answer(send, 413, self._too_large(), extra)
            status_holder["status"] = 413
        return status_holder["status"]

    async def _guard(
        self, scope: Scope, limited: Receive, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> Receive | None:
        """The ``receive`` to hand the app, or None once a structurally hostile body is answered (422)."""
        if not guarded(scope):
            return limited
        body = await read_all(limited)
        problem = inspect_json(body)
        if problem is None:
            return replay(body, receive)
        detail = {"path": problem[0], "message": problem[1]}
        error = {"code": "validation_error", "message": "the request is not valid", "details": [detail]}
        await self._answer(send, 422, orjson.dumps({"error": error}), extra)
        return None

    async def _check_rate(
        self, scope: Scope, headers: dict[bytes, bytes], rate_class: str | None
    ) -> Verdict | None:
        if not self.rate_limits or rate_class is None:
            return None
        container = getattr(getattr(scope.get("app"), "state", None), "container", None)
        limiter = getattr(container, "limiter", None)
        if container is None or limiter is None:
            return None
        state = scope.setdefault("state", {})
        earlier = state.get("rate_verdict")  # charged already by the evaluation fast lane
        if isinstance(earlier, Verdict):
            return earlier
        authorization = headers.get(b"authorization")
        principal = None
        if authorization is not None:
            header = authorization.decode("latin-1")
            try:
                principal = await container.auth.identify(header)
            except Exception as e:  # a key store that cannot answer: charge the address instead
                log.warning("ratelimit.identify_failed", error_class=type(e).__name__)
            else:  # the route's authentication reuses the answer: one key-store trip per request
                state["identified"] = Identified(header, principal)
        if principal is not None:
            role, identity = principal.role, "key:" + principal.key_id
        else:
            client = scope.get("client")
            role, identity = "anonymous", "addr:" + (client[0] if client else "unknown")
        verdict: Verdict = await limiter.check(rate_class, role, identity)
        return verdict

    def _too_large(self) -> bytes:
        return _error_body("payload_too_large", f"request body exceeds {self.max_body_bytes} bytes")

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> int:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = _route_template(scope)
        metrics.observe_http(route, scope.get("method", "GET"), status, seconds)

    def _log(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        status: int,
        seconds: float,
        sizes: dict[str, int],
        rate_class: str | None,
    ) -> None:
        policy = self.log_policy
        if not policy.enabled:
            return
        if rate_class == "evaluation" and status < 400 and random.random() >= policy.evaluation_sample_rate:
            return
        state = scope.get("state", {})
        write_request_log(
            policy,
            method=scope.get("method", "GET"),
            route=_route_template(scope),
            status=status,
            seconds=seconds,
            sizes=sizes,
            principal=getattr(state.get("principal"), "name", None),
            client=(scope.get("client") or ("unknown",))[0],
            headers=headers,
            context=state.get("evaluation_context"),
        )


def write_request_log(
    policy: RequestLogPolicy,
    *,
    method: str,
    route: str,
    status: int,
    seconds: float,
    sizes: dict[str, int],
    principal: str | None,
    client: str,
    headers: dict[bytes, bytes],
    context: object,
) -> None:
    """The one ``http.request`` line (secrets and personal context attributes masked); the caller
    decided it is written (policy on, sampling passed)."""
    shown = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in headers.items()
        if k.decode("latin-1").lower() in _LOGGED_HEADERS
    }
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_bytes": sizes["request"],
        "response_bytes": sizes["response"],
        "principal": principal,
        "client": client,
        "headers": mask_headers(shown),
    }
    if isinstance(context, dict):
        fields["context"] = mask_personal(context, policy.personal_attributes)
    if status >= 500:
        log.error("http.request", **fields)
    else:
        log.info("http.request", **fields)


def _unsupported_media_type(scope: Scope) -> bool:
    """A body under ``/api/`` labelled as something that is clearly not JSON (XML, multipart ...)."""
    if not scope.get("path", "").startswith("/api/") or scope.get("method") not in ("POST", "PUT", "PATCH"):
        return False
    original = scope.get("state", {}).get("declared_content_type", b"")
    kind = original.split(b";")[0].strip().lower()
    return not (kind.endswith(b"json") or kind in _READ_AS_JSON)


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
    scope.setdefault("state", {})["declared_content_type"] = declared
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
