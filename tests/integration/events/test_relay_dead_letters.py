"""Dead letters at the relay stage, on real Postgres and Kafka: a permanently refused event is
parked and holds the later events of its flag while other flags flow; redrive publishes the
flag's letters in version order; a still-poisonous event stays parked; purge skips it for good.
Also: ``alert:`` streams are routed to the metric-alerts topic."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.envelope import GENESIS_HASH, Event
from events.deadletters import WAITING, DeadLetterFilter, DeadLetterStore
from events.kafka.adapter import ensure_topics, flag_events_spec, metric_alerts_spec
from events.relay.letters import RelayRedriver, purge_relay_letter, redrive_relay_letters
from events.relay.relay import Relay
from events.store.postgres import PostgresEventStore
from tests.integration.events.kafka_log import read_topic
from tests.integration.events.relay_rig import RelayRig, first_versions, make_publisher, relay_rig
from tests.unit.events.factories import make_chain, make_event

SMALL = 2_000  # bytes: the poison event is larger, every other one smaller


def chain_with_poison(flag: str, count: int, poison_version: int) -> list[Event]:
    events, prev = [], GENESIS_HASH
    for version in range(1, count + 1):
        payload: dict[str, object] | None = {"blob": "x" * 5_000} if version == poison_version else None
        event = make_event(flag, version, prev_hash=prev, payload=payload)
        events.append(event)
        prev = event.hash
    return events


@pytest.fixture
async def topics(kafka_bootstrap: str, unique_topic: str) -> list[str]:
    names = [unique_topic, f"{unique_topic}-alerts"]
    await ensure_topics(kafka_bootstrap, [flag_events_spec(names[0], partitions=1),
                                          metric_alerts_spec(names[1], partitions=1)])
    return names


@pytest.fixture
async def rig(pool: asyncpg.Pool, kafka_bootstrap: str, topics: list[str]) -> AsyncIterator[RelayRig]:
    specs = [flag_events_spec(topics[0], partitions=1), metric_alerts_spec(topics[1], partitions=1)]
    async with relay_rig(pool, kafka_bootstrap, specs, max_record_bytes=SMALL) as made:
        yield made


async def _poisoned(store: PostgresEventStore, rig: RelayRig) -> list[Event]:
    """p: v1 fine, v2 too large, v3 and v4 fine; o: v1..v3 fine. Returns p's events."""
    poison = chain_with_poison("p", 4, poison_version=2)
    await store.append(poison)
    await store.append(make_chain("o", 3))
    await rig.relay.drain()
    return poison


async def test_relay__permanent_error__event_parked_later_ones_held_other_flag_flows(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    await _poisoned(store, rig)
    await store.append(make_chain("o", 1, start=4, prev_hash=(await store.read_stream("o"))[-1].hash))
    await rig.relay.drain()

    records = await read_topic(kafka_bootstrap, topics[0], {("p", 1)} | {("o", v) for v in (1, 2, 3, 4)})
    assert first_versions(records, "o") == [1, 2, 3, 4]
    assert first_versions(records, "p") == [1]
    page = await DeadLetterStore(pool).list(DeadLetterFilter(stage="relay", flag_key="p"))
    letters = {letter.version: letter for letter in page.items}
    assert letters[2].error_class == "RecordTooLarge" and letters[2].is_blocker
    assert letters[2].event_body is not None and letters[2].attempts >= 1
    assert [letters[v].error_class for v in (3, 4)] == [WAITING, WAITING]
    assert await DeadLetterStore(pool).blocked_flags("relay") == {"p"}


async def test_redrive__fixed_publisher__flag_published_in_version_order_then_flows_again(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    poison = await _poisoned(store, rig)
    later = make_chain("p", 1, start=5, prev_hash=poison[-1].hash)
    await store.append(later)
    await rig.relay.drain()  # v5 arrives while p is blocked: held too

    fixed = make_publisher(kafka_bootstrap, topics[0], topics[1])  # accepts large records
    try:
        report = await redrive_relay_letters(rig.letters, fixed, flag_key="p", by="ops-alice")
    finally:
        await fixed.close()
    assert len(report.published) == 4 and not report.reparked
    assert await DeadLetterStore(pool).blocked_flags("relay") == set()

    await store.append(make_chain("p", 1, start=6, prev_hash=later[-1].hash))
    await rig.relay.drain()
    records = await read_topic(kafka_bootstrap, topics[0], {("p", v) for v in range(1, 7)})
    assert first_versions(records, "p") == [1, 2, 3, 4, 5, 6]


async def test_redrive__still_poisonous__stays_parked_and_later_events_keep_waiting(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig
) -> None:
    await _poisoned(store, rig)
    report = await redrive_relay_letters(rig.letters, rig.publisher.inner, flag_key="p", by="ops-alice")

    assert report.published == [] and len(report.reparked) == 1
    dlq = DeadLetterStore(pool)
    parked = (await dlq.list(DeadLetterFilter(stage="relay", flag_key="p"))).items
    assert [(letter.version, letter.is_blocker) for letter in parked] == [(2, True)]
    assert await dlq.blocked_flags("relay") == {"p"}  # v3, v4: redriven but not published yet


async def test_purge__poison_skipped_for_good__held_events_released_also_on_republish(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    await _poisoned(store, rig)
    dlq = DeadLetterStore(pool)
    (blocker,) = [letter for letter in (await dlq.list(DeadLetterFilter(stage="relay"))).items
                  if letter.is_blocker]

    report = await purge_relay_letter(rig.letters, rig.publisher.inner, blocker.id, by="ops-alice",
                                      reason="payload corrupt, superseded")
    assert len(report.published) == 2
    await store.reset_checkpoint(rig.relay.name)  # as after a broker lost its log
    fresh_relay = Relay(store, rig.publisher, name=rig.relay.name, topic=topics[0], letters=rig.letters)
    await fresh_relay.drain()
    await store.append(make_chain("marker", 1))  # one partition: once it is read, all before it was
    await fresh_relay.drain()

    records = await read_topic(kafka_bootstrap, topics[0], {("marker", 1)})
    assert first_versions(records, "p") == [1, 3, 4]
    assert sum(1 for r in records if r.key == "p" and r.version == 1) == 2  # republished indeed
    assert await dlq.blocked_flags("relay") == set()


async def test_relay__alert_stream__routed_to_metric_alerts_topic(
    store: PostgresEventStore, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    await store.append(make_chain("alert:fp-123", 2))
    await store.append(make_chain("checkout", 1))
    await rig.relay.drain()

    alerts = await read_topic(kafka_bootstrap, topics[1], {("alert:fp-123", 1), ("alert:fp-123", 2)})
    flags = await read_topic(kafka_bootstrap, topics[0], {("checkout", 1)})
    assert first_versions(alerts, "alert:fp-123") == [1, 2]
    assert {r.key for r in alerts} == {"alert:fp-123"}
    assert not [r for r in flags if r.key.startswith("alert:")]


async def test_relay_redriver__freed_letters__published_in_order_stops_at_still_poisonous(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    """The Redriver the API's DeadLetterOperations calls after marking letters redriven."""
    await _poisoned(store, rig)
    dlq = DeadLetterStore(pool)
    await dlq.mark_redriven_matching(DeadLetterFilter(stage="relay", flag_key="p"), "ops-alice")
    freed = [x for x in await dlq.releasable("relay") if x.flag_key == "p"]
    assert [x.version for x in freed] == [2, 3, 4]

    assert await RelayRedriver(rig.letters, rig.publisher.inner)(freed) == 0  # v2 still too large
    fixed = make_publisher(kafka_bootstrap, topics[0], topics[1])
    try:
        await dlq.mark_redriven_matching(DeadLetterFilter(stage="relay", flag_key="p"), "ops-alice")
        freed = [x for x in await dlq.releasable("relay") if x.flag_key == "p"]
        assert await RelayRedriver(rig.letters, fixed)(freed) == len(freed) >= 3
    finally:
        await fixed.close()
    records = await read_topic(kafka_bootstrap, topics[0], {("p", v) for v in (1, 2, 3, 4)})
    assert first_versions(records, "p") == [1, 2, 3, 4]
    assert await dlq.blocked_flags("relay") == set()


async def test_republish_after_log_loss__blocked_flag__versions_below_the_blocker_published_again(
    store: PostgresEventStore, pool: asyncpg.Pool, rig: RelayRig, kafka_bootstrap: str, topics: list[str]
) -> None:
    """Given p blocked at the relay by v2 (v3, v4 waiting), when the relay republishes the whole log
    (its checkpoint reset, as after a broker lost its log), p v1 is published again — only v2 and
    later wait behind the letter — and no letter is parked for v1."""
    await _poisoned(store, rig)
    await store.reset_checkpoint(rig.relay.name)
    await store.append(make_chain("z", 1))  # after everything in (txid, seq) order: the end marker
    fresh_relay = Relay(store, rig.publisher, name=rig.relay.name, topic=topics[0], letters=rig.letters)
    await fresh_relay.drain()

    records = await read_topic(kafka_bootstrap, topics[0], {("z", 1)})
    assert [r.version for r in records if r.key == "p"] == [1, 1]  # first publish, then the republish
    page = await DeadLetterStore(pool).list(DeadLetterFilter(stage="relay", flag_key="p"))
    assert sorted((lt.version, lt.status) for lt in page.items) == [(v, "parked") for v in (2, 3, 4)]
    assert [r.version for r in records if r.key == "o"] == [1, 2, 3, 1, 2, 3]
