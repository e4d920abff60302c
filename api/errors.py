"""One place where errors become HTTP responses: ``{"error": {"code", "message", "details"}}``.

Codes are stable (clients branch on them); ``details`` name field paths. A retriable error that
maps to 503 carries ``Retry-After``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import FlagstreamError
from monitoring import metrics
from monitoring.sentry import capture_error

__all__ = ["ApiError", "error_body", "field_path", "install_error_handlers", "parse_instant"]

log = structlog.get_logger("api.errors")

RETRY_AFTER_SECONDS = 2
_OFFSET_AS_SPACE = re.compile(r"(?<=\d) (\d{2}:\d{2})$")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class ApiError(FlagstreamError):
    """An error raised by the HTTP edge itself, with an explicit status and code."""

    def __init__(
        self, status: int, code: str, message: str, *, details: Sequence[dict[str, str]] = ()
    ) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.error_code = code

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "code": self.error_code}


def error_body(
    code: str, message: str, details: Sequence[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details), **extra}}


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "rules", 0, "serve", "rollout", 1, "variation")`` → ``rules[0].serve.rollout[1].variation``.

    Pydantic's discriminator tags (``clause``, ``all`` ...) and function-validator markers are dropped.
    """
    parts: list[str] = []
    skip_tags = {"clause", "all", "any", "not", "function-after", "function-before", "function-wrap"}
    items = list(loc)
    if items and items[0] in ("body", "query", "path", "header"):
        items = items[1:]
    for item in items:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in skip_tags or str(item).startswith(("function-", "tagged-union[")):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "$"


def parse_instant(value: str, field: str) -> datetime:
    """An ISO-8601 instant with a UTC offset, or a 422 naming ``field``."""
    # "+00:00" sent unencoded in a query string arrives as " 00:00": take it as the offset it was.
    text = _OFFSET_AS_SPACE.sub(r"+\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise ApiError(
            422,
            "validation_error",
            f"{field} must be an ISO-8601 instant",
            details=[{"path": field, "message": "not an ISO-8601 instant"}],
        ) from e
    if parsed.tzinfo is None:
        raise ApiError(
            422,
            "validation_error",
            f"{field} needs a UTC offset (e.g. 2026-11-01T12:00:00Z)",
            details=[{"path": field, "message": "no UTC offset"}],
        )
    return parsed


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    metrics.record_error(str(body["error"]["code"]), status)
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _on_flagstream_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlagstreamError)
    status = exc.status if isinstance(exc, ApiError) else exc.http_status
    body = exc.to_dict()
    code = body.pop("code")
    message = body.pop("message")
    details = body.pop("details")
    body.pop("retriable", None)
    headers: dict[str, str] = {}
    if status == 503 or (exc.retriable and status >= 500):
        status = 503
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status >= 500:
        log.warning("api.error", code=code, status=status, error=message)
    return _json(status, error_body(code, message, details, **body), headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"path": field_path(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]
    return _json(422, error_body("validation_error", "the request is not valid", details))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    return _json(exc.status_code, error_body(code, str(exc.detail)), headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    from events.resilience import classify  # the one classification of driver errors

    if classify(exc) == "retriable":
        log.warning("api.dependency_unavailable", error_class=type(exc).__name__)
        return _json(
            503,
            error_body("service_unavailable", "a backing service is unavailable; retry shortly"),
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.exception("api.unhandled_error", error_class=type(exc).__name__)
    principal = getattr(request.state, "principal", None)
    capture_error(
        exc,
        correlation_id=getattr(request.state, "request_id", None),
        route=str(getattr(request.scope.get("route"), "path", metrics.UNMATCHED_ROUTE)),
        principal=getattr(principal, "name", None),
        method=request.method,
    )
    return _json(500, error_body("internal_error", "an unexpected error occurred"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FlagstreamError, _on_flagstream_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
