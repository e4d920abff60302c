"""History and search of the audit log, from Kafka and from Postgres, with field-level diffs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.audit import AuditFilters, KafkaAuditLog, PostgresAuditLog, StreamSettings
from events.store.db import create_pool
from tests.integration.audit.support import T0, apply_commands, checkout_story, create_topic, produce, store

pytestmark = pytest.mark.integration


async def test_history__checkout_story__diffs_follow_each_change(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, events)

    page = await KafkaAuditLog(StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)).history(
        "new-checkout", AuditFilters()
    )

    assert [e.type for e in page.entries] == [
        "FlagCreated",
        "RulesChanged",
        "RolloutChanged",
        "FlagRolledBack",
    ]
    created, rules, rollout, rollback = page.entries
    assert any(c.path == "key" and c.after == "new-checkout" for c in created.diff)
    assert [(c.path, c.before) for c in rules.diff] == [("rules[0]", None)]
    assert rules.diff[0].after["id"] == "beta"  # type: ignore[index,call-overload]
    assert {c.path: (c.before, c.after) for c in rollout.diff}["default.variation"] == ("off", None)
    assert sorted((c.path, c.after, c.before) for c in rollback.diff) == sorted(
        (c.path, c.before, c.after) for c in rollout.diff
    )
    assert (rollback.actor, rollback.reason, rollback.causation_id) == (
        "alice",
        "error rate alert",
        "alert-1",
    )
    assert rules.correlation_id == "corr-1" and rules.occurred_at == T0 + timedelta(hours=1)


async def test_history__paged_and_filtered__same_answer_from_kafka_and_postgres(
    kafka_bootstrap: str, unique_topic: str, fresh_database: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    others, _ = apply_commands("other-flag", checkout_story("other-flag")[:2], actor="bob")
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, [*events, *others])
    await store(fresh_database, [*events, *others])
    pool = await create_pool(fresh_database)
    try:
        for log in (
            KafkaAuditLog(StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)),
            PostgresAuditLog(pool),
        ):
            first = await log.history("new-checkout", AuditFilters(), limit=2)
            second = await log.history(
                "new-checkout", AuditFilters(), after_version=int(first.next_cursor or 0), limit=2
            )
            assert [e.version for e in first.entries] == [1, 2] and first.next_cursor == "2"
            assert [e.version for e in second.entries] == [3, 4] and second.next_cursor is None

            late = await log.history(
                "new-checkout",
                AuditFilters(since=T0 + timedelta(minutes=90), types=frozenset({"FlagRolledBack"})),
            )
            assert [e.version for e in late.entries] == [4]

            by_bob = await log.search(AuditFilters(actor="bob"), limit=1)
            rest = await log.search(AuditFilters(actor="bob"), cursor=by_bob.next_cursor, limit=1)
            assert [(e.flag_key, e.version) for e in [*by_bob.entries, *rest.entries]] == [
                ("other-flag", 1),
                ("other-flag", 2),
            ]
            assert rest.next_cursor is None
    finally:
        await pool.close()
