"""The relay on real Postgres and Kafka: every event published, per flag in version order, even
when transactions commit late; woken by NOTIFY, and again after its LISTEN connection is cut."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from core.envelope import GENESIS_HASH, Event, verify_chain
from events.errors import VersionConflict
from events.kafka.adapter import KafkaPublisher, ensure_topics, flag_events_spec, make_producer
from events.relay.relay import Relay
from events.store.db import Listener
from events.store.postgres import PostgresEventStore
from tests.integration.events.held import HeldTransaction
from tests.integration.events.kafka_log import LogRecord, read_topic
from tests.unit.events.factories import make_event

WRITERS, FLAGS, APPENDS_PER_WRITER, HELD = 20, 25, 25, 5


async def _eventually(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)


async def _append_next(store: PostgresEventStore, flag: str) -> Event:
    """Append the next event of ``flag``, deciding again on a lost race (as the command path does)."""
    while True:
        stream = await store.read_stream(flag)
        event = make_event(flag, len(stream) + 1, prev_hash=stream[-1].hash if stream else GENESIS_HASH)
        try:
            await store.append([event])
        except VersionConflict:
            continue
        return event


@pytest.fixture
async def publisher(kafka_bootstrap: str, unique_topic: str) -> AsyncIterator[KafkaPublisher]:
    await ensure_topics(kafka_bootstrap, [flag_events_spec(unique_topic, partitions=3)])
    producer: AIOKafkaProducer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        yield KafkaPublisher(producer, unique_topic, send_timeout=15)
    finally:
        await producer.stop()


@pytest.fixture
async def running_relay(
    store: PostgresEventStore, publisher: KafkaPublisher, migrated_database: str, unique_topic: str
) -> AsyncIterator[Relay]:
    relay = Relay(
        store,
        publisher,
        topic=unique_topic,
        batch_size=50,
        poll_interval=30.0,
        listener=Listener(migrated_database),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _held_append(
    pool: asyncpg.Pool, store: PostgresEventStore, flag: str, overtaken: list[bool]
) -> None:
    """Append inside a transaction held open until 20 later appends have committed."""
    async with HeldTransaction(pool) as held:
        event = await _append_next(held.store, flag)
        before = await store.count()
        await _eventually(lambda: _count_at_least(store, before + 20), within=60, what="later appends")
        held_seq = await held.store._fetch("SELECT seq FROM events WHERE event_id = $1", event.event_id)
        committed_max = await store._fetch("SELECT max(seq) AS m FROM events")
        overtaken.append(committed_max[0]["m"] > held_seq[0]["seq"])
        await held.commit()


async def _count_at_least(store: PostgresEventStore, n: int) -> bool:
    return await store.count() >= n


async def test_relay__concurrent_and_late_commits__kafka_has_every_event_in_version_order(
    store: PostgresEventStore,
    pool: asyncpg.Pool,
    running_relay: Relay,
    kafka_bootstrap: str,
    unique_topic: str,
) -> None:
    rng = random.Random(3)

    async def write(writer: int) -> None:
        for _ in range(APPENDS_PER_WRITER):
            await _append_next(store, f"flag-{rng.randrange(FLAGS)}")

    overtaken: list[bool] = []
    await asyncio.gather(
        *(_held_append(pool, store, f"held-{i}", overtaken) for i in range(HELD)),
        *(write(w) for w in range(WRITERS)),
    )
    assert overtaken == [True] * HELD  # each held row's seq was passed by committed rows: the trap was set
    total = await store.count()
    assert total == WRITERS * APPENDS_PER_WRITER + HELD

    await _eventually(lambda: _relay_caught_up(store, running_relay), within=60, what="relay drained")
    versions = {k: await store.current_version(k) for k in await store.stream_keys()}
    expected = {(k, v) for k, n in versions.items() for v in range(1, n + 1)}
    records = await read_topic(kafka_bootstrap, unique_topic, expected)

    _assert_in_version_order_per_flag(records)
    for key in await store.stream_keys():
        first_copies = _first_copies(records, key)
        assert first_copies == await store.read_stream(key)
        assert verify_chain(first_copies) is None


async def _relay_caught_up(store: PostgresEventStore, relay: Relay) -> bool:
    return relay.position is not None and (await store.backlog(relay.position))[0] == 0


def _assert_in_version_order_per_flag(records: list[LogRecord]) -> None:
    """Per flag, the log is 1, 2, 3 ... where any record may only repeat one already seen."""
    highest: dict[str, int] = defaultdict(int)
    for record in records:
        if record.version <= highest[record.key]:
            continue  # a redelivery of an earlier record
        previous = highest[record.key]
        assert record.version == previous + 1, f"{record.key}: {record.version} after {previous}"
        highest[record.key] = record.version


def _first_copies(records: list[LogRecord], key: str) -> list[Event]:
    seen: dict[int, Event] = {}
    for record in records:
        if record.key == key:
            seen.setdefault(record.version, Event.from_json(record.value))
    return [seen[v] for v in sorted(seen)]


async def test_relay__notify__publishes_without_waiting_for_poll(
    store: PostgresEventStore, running_relay: Relay
) -> None:
    await _append_next(store, "wake")
    await _eventually(lambda: _published_at_least(running_relay, 1), within=5, what="woken by NOTIFY")


async def test_relay__listen_connection_killed__reconnects_and_still_wakes(
    store: PostgresEventStore, pool: asyncpg.Pool, running_relay: Relay
) -> None:
    await _append_next(store, "wake")
    await _eventually(lambda: _published_at_least(running_relay, 1), within=5, what="first wake")
    killed = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    )
    assert killed == 1
    await _eventually(lambda: _listening(pool), within=10, what="LISTEN re-registered")
    await _append_next(store, "wake")
    await _eventually(lambda: _published_at_least(running_relay, 2), within=5, what="woken after reconnect")


async def _published_at_least(relay: Relay, n: int) -> bool:
    return relay.published >= n


async def _listening(pool: asyncpg.Pool) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    )
    return bool(count == 1)
