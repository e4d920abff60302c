"""History entries: diffs carried or derived, filters, search cursors."""

from __future__ import annotations

from datetime import timedelta

import orjson

from core.commands import ArchiveFlag
from events.audit.history import AuditFilters, _decode_cursor, _encode_cursor, diff_of, entry_of
from tests.integration.audit.support import T0, apply_commands, checkout_story


def test_diff_of__archive_without_carried_diff__derived_archived_change() -> None:
    events, _ = apply_commands("new-checkout", [*checkout_story()[:1], ArchiveFlag(flag_key="new-checkout")])

    changes = diff_of(events[1])

    assert [(c.path, c.before, c.after) for c in changes] == [("archived", False, True)]


def test_entry_of__rules_change__carries_envelope_metadata_and_diff() -> None:
    events, _ = apply_commands("new-checkout", checkout_story()[:2])

    entry = entry_of(events[1])

    assert (entry.version, entry.type, entry.environment, entry.reason) == (
        2,
        "RulesChanged",
        "production",
        "beta users first",
    )
    assert [c.path for c in entry.diff] == ["rules[0]"] and entry.prev_hash == events[0].hash


def test_filters__environment__keeps_that_environment_and_flag_level_events() -> None:
    events, _ = apply_commands("new-checkout", checkout_story())

    staging = [e.version for e in events if AuditFilters(environment="staging").admits(e)]
    window = [
        e.version
        for e in events
        if AuditFilters(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2)).admits(e)
    ]

    assert staging == [1] and window == [2, 3]


def test_cursor__round_trip__same_position() -> None:
    position = ("2026-11-01T12:00:00.000000Z", "flag|with-bar", 7)

    assert _decode_cursor(_encode_cursor(position)) == position


def test_filters__raw_fields_and_event__same_verdicts() -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    cases = [
        AuditFilters(environment="staging"),
        AuditFilters(actor="alice", types=frozenset({"RulesChanged", "FlagRolledBack"})),
        AuditFilters(since=T0 + timedelta(minutes=60), until=T0 + timedelta(minutes=120)),
        AuditFilters(flag_key="other"),
    ]

    for filters in cases:
        assert [filters.admits_fields(orjson.loads(e.to_json())) for e in events] == [
            filters.admits(e) for e in events
        ]
