"""log_audit_access: every read of the audit log leaves a structured record."""

from __future__ import annotations

from datetime import UTC, datetime

from structlog.testing import capture_logs

from events.audit import log_audit_access


def test_log_audit_access__history_read__who_what_and_filters_logged() -> None:
    with capture_logs() as logs:
        log_audit_access(
            "alice",
            "history",
            {
                "flag": "new-checkout",
                "since": datetime(2026, 11, 1, tzinfo=UTC),
                "types": frozenset({"RulesChanged"}),
                "actor": None,
            },
        )

    assert logs == [
        {
            "event": "audit.accessed",
            "log_level": "info",
            "principal": "alice",
            "action": "history",
            "params": {
                "flag": "new-checkout",
                "since": "2026-11-01T00:00:00+00:00",
                "types": ["RulesChanged"],
            },
        }
    ]
