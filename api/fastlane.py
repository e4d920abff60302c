"""The evaluation routes' ordinary requests, answered without FastAPI's machinery.

``POST /api/v1/evaluate`` (without a query), ``POST /ofrep/v1/evaluate/flags/{key}`` and
``POST /ofrep/v1/evaluate/flags`` are most of a deployment's traffic. Through FastAPI each costs
about ten times the evaluation itself (routing, dependency injection, a pydantic model per request
and per response, a Redis round trip for the rate limit). This ASGI layer, outermost, answers a
request itself only when everything about it is ordinary:

- a ``Bearer`` key authenticated within the key cache's TTL, whose role may evaluate;
- a JSON body within the size limit, plainly valid for the route's own model (``EvaluateRequest``) or
  shaped as OFREP's ``{"context": {...}}``;
- an environment whose reader is already open in this process;
- the rate limit not reached (the limiter leases tokens from the shared bucket, see
  ``api.ratelimit``).

Anything else — a key's first request, bad input, an unknown environment, a refusal, ``?as_of=``,
another content type — goes on to the middleware and the routes with the body it read handed on
(and the rate-limit verdict, so nothing is charged twice), which answer exactly as before. The
answers here are the routes' own: the same shaping functions, headers (``X-Request-ID``,
``RateLimit-Policy``/``RateLimit``), metrics and sampled request log line. ``Settings.
evaluation_fast_lane = false`` turns it off; ``tests/integration/api/test_fastlane.py`` compares
both paths answer for answer.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Permission, Principal
from api.middleware import RequestLogPolicy, write_request_log
from api.ratelimit import Verdict
from api.routes.evaluate import evaluation_json
from api.routes.ofrep import bulk_answer, failure_json, if_none_match_matches, success_json
from api.schemas import EvaluateRequest
from core.evaluation.result import ErrorCode
from core.model import ENVIRONMENT_PATTERN
from events.commands.attributes import observe_evaluated_context
from monitoring import metrics

__all__ = ["EvaluationFastLane"]

_EVALUATE = "/api/v1/evaluate"
_OFREP_BULK = "/ofrep/v1/evaluate/flags"
_OFREP_ONE = _OFREP_BULK + "/"
_OFREP_ONE_ROUTE = _OFREP_ONE + "{key}"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_ID_PREFIX = uuid.uuid4().hex[:16].encode() + b"-"
_ID_COUNTER = itertools.count(1)

log = structlog.get_logger("api.fastlane")
_REQUEST_LOG = logging.getLogger("api.http")  # write_request_log's logger (structlog over stdlib)


class _Ordinary(Exception):
    """Not an ordinary request after all: the routes answer it."""


class EvaluationFastLane:
    def __init__(
        self,
        app: ASGIApp,
        container: Callable[[], Any],
        *,
        max_body_bytes: int = 1_048_576,
        log_policy: RequestLogPolicy | None = None,
        rate_limits: bool = True,
        enabled: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.log_policy = log_policy or RequestLogPolicy(enabled=False)
        self.rate_limits = rate_limits
        self.container = container
        self.enabled = enabled
        self.answered = 0  # requests this lane answered itself (diagnostics and tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route_of(scope) if self.enabled else None
        container = self.container() if route is not None else None
        if route is None or container is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        principal = container.auth.cached(_text(headers.get(b"authorization")))
        if principal is None or not principal.can(Permission.EVALUATE) or not _json_or_none(headers):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        read = await self._read_body(headers, receive)
        if read is None:
            return  # the client went away before its body was complete: nobody to answer
        body, complete, more = read
        if not complete:
            await self.app(scope, _replay(body, more, receive), send)
            return
        verdict = None
        try:
            verdict = await self._charge(container, principal) if self.rate_limits else None
            if verdict is not None and not verdict.allowed:
                raise _Ordinary
            if route == _EVALUATE:
                status, answer, extra, context = self._evaluate(container, body)
            else:
                status, answer, extra, context = self._ofrep(container, route, scope["path"], headers, body)
        except Exception as e:  # _Ordinary, or a fault: the routes answer it (and report a fault as usual)
            if not isinstance(e, _Ordinary):
                log.warning("fastlane.handed_on_after_error", error_class=type(e).__name__)
            if verdict is not None:
                scope.setdefault("state", {})["rate_verdict"] = verdict
            await self.app(scope, _replay(body, False, receive), send)
            return
        request_id = _request_id(headers)
        if verdict is not None:
            extra.extend(verdict.headers())
        await _send(send, status, answer, request_id, extra)
        self.answered += 1
        elapsed = time.perf_counter() - started
        metrics.observe_http(route, "POST", status, elapsed)
        sizes = {"request": len(body), "response": len(answer)}
        self._log(scope, headers, route, status, elapsed, sizes, principal, request_id, context)

    async def _read_body(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[bytes, bool, bool] | None:
        """``(body, complete, more_body)``, complete False when the body passes the size limit (the
        middleware answers 413, with the part read handed on); None when the client went away."""
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return b"", False, True
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body", False))
            if size > self.max_body_bytes:
                return b"".join(chunks), False, more
            if not more:
                return b"".join(chunks), True, False

    @staticmethod
    async def _charge(container: Any, principal: Principal) -> Verdict | None:
        limiter = getattr(container, "limiter", None)
        if limiter is None:
            return None
        verdict: Verdict = await limiter.check("evaluation", principal.role, "key:" + principal.key_id)
        return verdict

    @staticmethod
    def _evaluate(container: Any, body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], Any]:
        environment, context, flags = _evaluate_request(body)
        reader = container.readers.open(environment)
        if reader is None or not math.isfinite(reader.staleness_seconds):
            raise _Ordinary
        observe_evaluated_context(container, context)
        now = datetime.now(UTC)
        if flags is None:
            results = reader.evaluate_all(context, now)
        else:
            results = {key: reader.evaluate(key, context, now) for key in flags}
        metrics.record_evaluations(environment, results)
        answer = {
            "environment": environment,
            "results": {key: evaluation_json(result) for key, result in results.items()},
            "as_of": None,
            "staleness_seconds": round(reader.staleness_seconds, 3),
        }
        return 200, orjson.dumps(answer), [], context

    @staticmethod
    def _ofrep(
        container: Any, route: str, path: str, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], Any]:
        environment = _text(headers.get(b"x-flagstream-environment")).strip()
        reader = container.readers.open(environment) if environment else None
        if reader is None:
            raise _Ordinary
        context = _ofrep_context(body)
        observe_evaluated_context(container, context)
        snapshot = reader.snapshot
        now = datetime.now(UTC)
        if route == _OFREP_ONE_ROUTE:
            key = path[len(_OFREP_ONE) :]
            result = snapshot.evaluate(key, context, now)
            metrics.record_evaluation(key, environment, str(result.reason), result.error_code)
            if result.error_code is ErrorCode.FLAG_NOT_FOUND:
                details = f"flag {key!r} is not defined in environment {environment!r}"
                failure = {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": details}
                return 404, orjson.dumps(failure), [], context
            if result.error_code is not None:
                return 400, orjson.dumps(failure_json(key, result)), [], context
            success = success_json(key, result, snapshot.source_of(key), environment)
            return 200, orjson.dumps(success), [], context
        results = snapshot.evaluate_all(context, now)
        metrics.record_evaluations(environment, results)
        answer, etag = bulk_answer(snapshot, results, environment)
        extra = [(b"etag", etag.encode())]
        if if_none_match_matches(_text(headers.get(b"if-none-match")) or None, etag):
            return 304, b"", extra, context
        return 200, answer, extra, context

    def _log(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        route: str,
        status: int,
        seconds: float,
        sizes: dict[str, int],
        principal: Principal,
        request_id: bytes,
        context: Any,
    ) -> None:
        policy = self.log_policy
        if not policy.enabled or (status < 400 and random.random() >= policy.evaluation_sample_rate):
            return
        if not _REQUEST_LOG.isEnabledFor(logging.ERROR if status >= 500 else logging.INFO):
            return  # the level filters the line out: do not build it
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=request_id.decode())
        write_request_log(
            policy,
            method="POST",
            route=route,
            status=status,
            seconds=seconds,
            sizes=sizes,
            principal=principal.name,
            client=(scope.get("client") or ("unknown",))[0],
            headers=headers,
            context=context,
        )


def _route_of(scope: Scope) -> str | None:
    """The route template of an evaluation request this lane may answer, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == _EVALUATE:
        return None if scope.get("query_string") else _EVALUATE
    if path == _OFREP_BULK:
        return _OFREP_BULK
    key = path[len(_OFREP_ONE) :] if path.startswith(_OFREP_ONE) else ""
    return _OFREP_ONE_ROUTE if key and "/" not in key else None


async def _send(
    send: Send, status: int, body: bytes, request_id: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    if status == 304:  # no body, no content type (as Starlette answers a 304)
        headers = [(b"x-request-id", request_id), *extra]
    else:
        length = str(len(body)).encode()
        headers = [*_JSON_HEADERS, (b"content-length", length), (b"x-request-id", request_id), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("latin-1")


def _json_or_none(headers: Mapping[bytes, bytes]) -> bool:
    declared = headers.get(b"content-type")
    return declared is None or declared.split(b";")[0].strip().lower().endswith(b"json")


def _request_id(headers: Mapping[bytes, bytes]) -> bytes:
    """The caller's ``X-Request-ID`` if well-formed, else a new one: this process's random prefix and a
    counter (unique like a UUID4, a tenth of its cost)."""
    raw = headers.get(b"x-request-id")
    if raw is not None and _REQUEST_ID.match(_text(raw).strip()):
        return _text(raw).strip().encode()
    return b"%s%x" % (_ID_PREFIX, next(_ID_COUNTER))


_EVALUATE_FIELDS = frozenset(EvaluateRequest.model_fields)
_ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN.removeprefix("^").removesuffix("$"))
_MAX_FLAGS = 1000  # EvaluateRequest.flags' max_length


# orjson reads an integer beyond 64 bits as a float; the routes' parsers keep it exact. Such a number
# can only be a float in the parsed context or sit inside a nested value of it: then a run of 19 digits
# in the body (2**63 has 19) sends it to the routes rather than risk a different answer. A flat context
# of text, integers and booleans (the usual one) skips the scan.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_INEXACT = frozenset({float, dict, list})


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Ordinary from None


def _check_numbers(context: dict[str, Any], body: bytes) -> None:
    for value in context.values():
        if value.__class__ in _INEXACT:
            if _LONG_DIGITS.search(body) is not None:
                raise _Ordinary
            return


def _evaluate_request(body: bytes) -> tuple[str, dict[str, Any], list[str] | None]:
    """``EvaluateRequest``'s reading of a body it accepts, without building the model (a tenth of its
    cost). Everything is checked as strictly as the model does, or more: what is not plainly valid
    here goes to the route, whose model gives the 422 and its field path."""
    parsed = _loads(body)
    if parsed.__class__ is not dict or not _EVALUATE_FIELDS.issuperset(parsed):
        raise _Ordinary
    environment = parsed.get("environment")
    context = parsed.get("context", {})
    flags = parsed.get("flags")
    if environment.__class__ is not str or _ENVIRONMENT.fullmatch(environment) is None:
        raise _Ordinary
    if context.__class__ is not dict:
        raise _Ordinary
    _check_numbers(context, body)
    if flags is not None and (
        flags.__class__ is not list or len(flags) > _MAX_FLAGS or any(f.__class__ is not str for f in flags)
    ):
        raise _Ordinary
    return environment, context, flags


def _ofrep_context(body: bytes) -> dict[str, Any]:
    """The route's reading of ``{"context": {...}}``; anything it would refuse is not ordinary."""
    if not body.strip():
        return {}
    parsed = _loads(body)
    if not isinstance(parsed, dict):
        raise _Ordinary
    context = parsed.get("context", {})
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise _Ordinary
    _check_numbers(context, body)
    return context


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands on the body read so far, then the rest of the request."""
    handed = False

    async def replayed() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed
