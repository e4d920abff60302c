"""verify: chains, gaps, tampering, redeliveries, and agreement with the Postgres table."""

from __future__ import annotations

import uuid

import orjson
import pytest

from core.envelope import EventDraft, seal
from events.audit import StreamSettings, verify_log
from tests.integration.audit.support import apply_commands, checkout_story, create_topic, produce, store

pytestmark = pytest.mark.integration


def _settings(bootstrap: str, topic: str) -> StreamSettings:
    return StreamSettings(bootstrap, topic, idle_ms=300)


async def test_verify__intact_log_with_redelivery__ok_and_counted(
    kafka_bootstrap: str, unique_topic: str, fresh_database: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, [*events[:3], events[2], events[3], events[1]])
    await store(fresh_database, events)
    progress: list[tuple[str, int]] = []

    report = await verify_log(
        _settings(kafka_bootstrap, unique_topic),
        database_url=fresh_database,
        progress=lambda phase, n: progress.append((phase, n)),
        progress_every=2,
    )

    assert report.ok, report.first
    assert (report.kafka_events, report.redeliveries, report.older_duplicates) == (6, 1, 1)
    assert (report.postgres_rows, report.streams) == (4, 1)
    assert ("kafka", 6) in progress and ("postgres", 4) in progress


async def test_verify__one_record_body_altered__tampered_at_its_offset(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    body = orjson.loads(events[1].to_json())
    body["actor"] = "mallory"
    forged = ("new-checkout", orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await produce(kafka_bootstrap, unique_topic, [events[0], forged, *events[2:]])

    report = await verify_log(_settings(kafka_bootstrap, unique_topic))

    assert report.first is not None
    assert (report.first.problem, report.first.flag_key, report.first.version) == (
        "tampered",
        "new-checkout",
        2,
    )
    assert (report.first.source, report.first.partition, report.first.offset) == ("kafka", 0, 1)


async def test_verify__version_missing__gap_reported(kafka_bootstrap: str, unique_topic: str) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, [events[0], events[1], events[3]])

    report = await verify_log(_settings(kafka_bootstrap, unique_topic))

    assert report.first is not None and not report.ok
    assert (report.first.problem, report.first.version) == ("gap", 3)


async def test_verify__kafka_forked_from_postgres__first_differing_version_named(
    kafka_bootstrap: str, unique_topic: str, fresh_database: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    fork = seal(
        EventDraft(type=events[2].type, environment=events[2].environment, payload=events[2].payload),
        event_id=uuid.uuid4(),
        flag_key="new-checkout",
        version=3,
        prev_hash=events[1].hash,
        occurred_at=events[2].occurred_at,
        actor="mallory",
        reason=events[2].reason,
    )
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, [*events[:2], fork])  # an intact chain, but another one
    await store(fresh_database, events)

    report = await verify_log(_settings(kafka_bootstrap, unique_topic), database_url=fresh_database)

    assert report.first is not None
    assert (report.first.source, report.first.problem, report.first.version) == ("compare", "mismatch", 3)
    assert "actor" in report.first.detail and "event_id" in report.first.detail
    assert report.first.offset is not None
    assert report.discrepancies == 2  # the fork at v3 and version 4 missing on Kafka


async def test_verify__postgres_row_without_kafka_copy__missing_in_kafka(
    kafka_bootstrap: str, unique_topic: str, fresh_database: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, events[:3])
    await store(fresh_database, events)

    report = await verify_log(_settings(kafka_bootstrap, unique_topic), database_url=fresh_database)

    assert report.first is not None
    assert (report.first.problem, report.first.version) == ("missing_in_kafka", 4)


async def test_verify__two_worker_processes__same_verdicts_as_one(
    kafka_bootstrap: str, unique_topic: str, fresh_database: str
) -> None:
    stories = [apply_commands(f"flag-{i}", checkout_story(f"flag-{i}"))[0] for i in range(6)]
    body = orjson.loads(stories[4][1].to_json())
    body["actor"] = "mallory"
    forged = (stories[4][1].flag_key, orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(
        kafka_bootstrap,
        unique_topic,
        [e for s in stories[:4] for e in s] + [stories[4][0], forged, *stories[4][2:]],
    )
    await store(fresh_database, [e for s in stories for e in s])
    settings = _settings(kafka_bootstrap, unique_topic)

    one = await verify_log(settings, database_url=fresh_database)
    two = await verify_log(settings, database_url=fresh_database, workers=2)

    assert two.first == one.first and two.discrepancies == one.discrepancies
    assert (two.kafka_events, two.postgres_rows, two.streams) == (one.kafka_events, one.postgres_rows, 5)
    assert one.first is not None and (one.first.problem, one.first.flag_key) == ("tampered", "flag-4")
