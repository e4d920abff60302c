"""Error tracking with sentry-sdk: off unless ``SENTRY_DSN`` is set.

Only unexpected errors (the API's 500s) are sent, explicitly, by :func:`capture_error`, tagged with
the request's ``correlation_id``, route template and principal name. Nothing of the request is sent:
no headers, cookies, body, query string, local variables or breadcrumbs (:func:`scrub_event` drops
them, and the SDK is started collecting no user info, bodies or frame variables and with no default
integrations); messages and exception texts go through the log redaction
(API keys, Bearer credentials, URL passwords).
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
import structlog

from monitoring.logging import redact_text

__all__ = ["capture_error", "configure_sentry", "scrub_event", "sentry_enabled"]

log = structlog.get_logger("monitoring.sentry")

_KEPT_TAGS = ("correlation_id", "route", "principal", "method", "error_code")
_state = {"enabled": False}


def sentry_enabled() -> bool:
    return _state["enabled"]


def scrub_event(event: Any, _hint: Any = None) -> Any:
    """``before_send``: keep the exception's type and frames (no variables), our tags, nothing else."""
    event.pop("request", None)
    event.pop("user", None)
    event.pop("breadcrumbs", None)
    event.pop("extra", None)
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        event["contexts"] = {k: v for k, v in contexts.items() if k in ("runtime", "os", "trace")}
    tags = event.get("tags")
    if isinstance(tags, dict):
        event["tags"] = {k: v for k, v in tags.items() if k in _KEPT_TAGS}
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = redact_text(exception["value"])
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    if isinstance(event.get("message"), str):
        event["message"] = redact_text(event["message"])
    return event


def configure_sentry(dsn: str | None, *, environment: str = "production", release: str | None = None) -> bool:
    """Start the SDK when ``dsn`` is set (answers whether it is on)."""
    if not dsn:
        _state["enabled"] = False
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        # no user info, bodies or frame variables collected (and scrub_event drops the rest)
        data_collection={"user_info": False, "http_bodies": [], "stack_frame_variables": False},
        max_breadcrumbs=0,
        default_integrations=False,
        auto_enabling_integrations=False,
        before_send=scrub_event,
        traces_sample_rate=0.0,
    )
    _state["enabled"] = True
    log.info("sentry.enabled", environment=environment)
    return True


def capture_error(
    error: BaseException, *, correlation_id: str | None, route: str, principal: str | None, method: str
) -> None:
    """Send one unexpected error with the request's identifiers (no-op when Sentry is off)."""
    if not _state["enabled"]:
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("correlation_id", correlation_id or "none")
        scope.set_tag("route", route)
        scope.set_tag("principal", principal or "anonymous")
        scope.set_tag("method", method)
        scope.set_tag("error_code", "internal_error")
        scope.capture_exception(error)
