"""Structured logging for every Flagstream process (structlog over the standard library).

Call :func:`configure_logging` once at process start (the API's app factory, each worker's
``main``). Every line is one JSON object with ``timestamp`` (ISO 8601, UTC), ``level``,
``logger``, ``event`` and the key/values of the call, plus whatever was bound with
:func:`bind_context` (e.g. the request's ``correlation_id``: it then appears in every line
logged while that request is handled). Standard-library loggers (uvicorn, aiokafka,
asyncpg ...) go through the same processors and renderer.

Secrets are never logged: :func:`redact_secrets` replaces the values of keys named like
``authorization``, ``api_key``, ``password``, ``secret``, ``token``, ``cookie``,
``credentials`` (but not ``*_id`` / ``*_prefix``), and scrubs inside any string our API
keys (``fs_`` followed by 16+ key characters, as api.auth issues them), ``Bearer``/``Basic`` credentials and
passwords in URLs (``postgresql://user:secret@host``).
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "bind_context",
    "bound_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "mask_headers",
    "mask_personal",
    "redact_secrets",
    "redact_text",
]

REDACTED: Final = "[REDACTED]"
_SENSITIVE_KEY: Final = re.compile(
    r"(authorization|api_?key|apikey|password|passwd|passphrase|secret|token|cookie|credentials?|private_?key)",
    re.IGNORECASE,
)
_EXEMPT_KEY_SUFFIX: Final = re.compile(r"(_id|_prefix)$", re.IGNORECASE)
_TEXT_PATTERNS: Final = (
    (re.compile(r"\bfs_[A-Za-z0-9_\-]{16,}"), "fs_" + REDACTED),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 " + REDACTED),
    (re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)
# Third-party loggers that install their own handlers; they must propagate to ours instead.
_FOREIGN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "asyncpg", "httpx")


def redact_text(text: str) -> str:
    """``text`` with API keys, Bearer/Basic credentials and URL passwords replaced."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    normalised = key.replace("-", "_")
    return bool(_SENSITIVE_KEY.search(normalised)) and not _EXEMPT_KEY_SUFFIX.search(normalised)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_sensitive_key(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace secret values (by key name, recursively, and by shape)."""
    for key in list(event_dict):
        if key.startswith("_"):  # structlog/stdlib internals (_record, _from_structlog)
            continue
        value = event_dict[key]
        event_dict[key] = REDACTED if _is_sensitive_key(key) and value is not None else _redact_value(value)
    return event_dict


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers fit for a log line: credentials, cookies and key material replaced."""
    return {
        name: REDACTED if _is_sensitive_key(name) or name.lower() == "set-cookie" else redact_text(value)
        for name, value in headers.items()
    }


def mask_personal(context: Mapping[str, Any], personal: Collection[str]) -> dict[str, Any]:
    """An evaluation context fit for a log line: attributes named in ``personal`` (case-insensitive,
    at any depth) replaced, secrets masked like everywhere else."""
    names = {name.lower() for name in personal}

    def mask(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: REDACTED if str(k).lower() in names else mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mask(v) for v in value]
        return value

    masked = mask(context)
    result: dict[str, Any] = _redact_value(masked)
    return result


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(
    level: int | str = "INFO",
    json: bool = True,
    stream: TextIO | None = None,
    *,
    file: str | None = None,
    file_max_bytes: int = 10_485_760,
    file_backups: int = 5,
) -> None:
    """Route structlog and standard-library logging to ``stream`` (default: stderr) through one
    renderer: JSON lines when ``json`` (production), key/values otherwise (a terminal).
    With ``file``, the same lines also go to that file as JSON, rotated when it reaches
    ``file_max_bytes`` (``file_backups`` old files kept: ``x.log.1`` ...).
    Safe to call again (e.g. from tests): it replaces the previous configuration."""
    out = sys.stderr if stream is None else stream
    shared = _shared_processors()
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    root.addHandler(handler)
    if file is not None:
        rotating = logging.handlers.RotatingFileHandler(
            file, maxBytes=file_max_bytes, backupCount=file_backups, encoding="utf-8"
        )
        rotating.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(sort_keys=False),
                ],
            )
        )
        root.addHandler(rotating)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,  # cached loggers ignore later configure() calls
    )


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structured logger named ``name`` (use ``__name__``) with ``initial`` key/values bound."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def bind_context(**values: Any) -> None:
    """Bind key/values (e.g. ``correlation_id``) to every line logged in this context (task)."""
    bind_contextvars(**values)


def clear_context() -> None:
    clear_contextvars()


bound_context = bound_contextvars
"""Context manager: ``with bound_context(correlation_id=cid): ...`` binds for the block only."""
