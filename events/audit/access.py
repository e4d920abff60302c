"""Every read of the audit log through the API is itself logged: who looked at what."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog

__all__ = ["log_audit_access"]

log = structlog.get_logger("flagstream.audit.access")


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set | tuple):
        return sorted(str(v) for v in value)
    return value


def log_audit_access(principal: str, action: str, params: Mapping[str, object]) -> None:
    """Record one read of the audit log (structlog event ``audit.accessed``).

    ``action`` names what was read (``history``, ``search``, ``as_of``, ``evaluate_as_of``,
    ``export``, ``verify``); ``params`` are the query's parameters (flag, environment, filters,
    instant...). ``None`` values are left out. Call it before serving the read, so that an
    attempt is logged even when the read fails.
    """
    fields = {k: _plain(v) for k, v in params.items() if v is not None}
    log.info("audit.accessed", principal=principal, action=action, params=fields)
