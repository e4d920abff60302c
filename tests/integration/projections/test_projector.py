"""The projector on real Kafka (tansu) and Redis: read model == replay(events), self-rebuild, poison."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from core.state import FlagState
from projections.connection import make_redis
from projections.errors import PoisonEvent
from projections.projector import Projector
from projections.readmodel import RedisReadModel
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


def _history(flags: int = 6, changes: int = 8) -> list[Event]:
    writer = StreamWriter()
    events: list[Event] = []
    for i in range(flags):
        events.append(writer.create(flag_doc(f"flag-{i}", "production", "staging")))
    for round_ in range(changes):
        for i in range(flags):
            env = "production" if (i + round_) % 2 else "staging"
            events.append(writer.configure(f"flag-{i}", env, on_config(round_ % 2 == 0)))
    return events


def _expected(events: list[Event]) -> dict[str, FlagState]:
    keys = sorted({e.flag_key for e in events})
    return {k: replay([e for e in events if e.flag_key == k]) for k in keys}


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


def _projector(client: Redis, bootstrap: str, topic: str) -> Projector:
    return Projector(
        RedisReadModel(client),
        bootstrap_servers=bootstrap,
        topic=topic,
        group=f"g-{topic}",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


async def _states(model: RedisReadModel, keys: list[str]) -> dict[str, FlagState]:
    return {k: await model.load_flag_state(k) for k in keys}


async def _project_until_equal(projector: Projector, expected: dict[str, FlagState]) -> None:
    async def caught_up() -> bool:
        return await _states(projector.read_model, list(expected)) == expected

    await projector.run_until(caught_up, within=30)


async def test_projector__consumes_topic__read_model_equals_replay(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    events = _history()
    await create_topic(kafka_bootstrap, unique_topic)
    await publish(kafka_bootstrap, unique_topic, events + events[:10])  # with redeliveries
    projector = _projector(client, kafka_bootstrap, unique_topic)
    await projector.start()
    try:
        await _project_until_equal(projector, _expected(events))
    finally:
        await projector.stop()
    assert projector.applied == len(events)


async def test_projector__redis_wiped_and_restarted__rebuilds_same_state(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    events = _history(flags=3, changes=4)
    expected = _expected(events)
    await create_topic(kafka_bootstrap, unique_topic)
    await publish(kafka_bootstrap, unique_topic, events)
    first = _projector(client, kafka_bootstrap, unique_topic)
    await first.start()
    try:
        await _project_until_equal(first, expected)
    finally:
        await first.stop()
    await client.flushdb()

    second = _projector(client, kafka_bootstrap, unique_topic)  # Kafka has committed offsets: ignored
    await second.start()
    try:
        await _project_until_equal(second, expected)
    finally:
        await second.stop()


async def test_projector__redis_wiped_while_running__rewinds_and_rebuilds(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    events = _history(flags=3, changes=4)
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await publish(kafka_bootstrap, unique_topic, events[:9])
    projector = _projector(client, kafka_bootstrap, unique_topic)
    await projector.start()
    try:
        await _project_until_equal(projector, _expected(events[:9]))
        await client.flushdb()
        await publish(kafka_bootstrap, unique_topic, events[9:])
        await _project_until_equal(projector, _expected(events))
    finally:
        await projector.stop()


async def test_projector__unparseable_record__raises_poison_event(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    writer = StreamWriter()
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await publish(kafka_bootstrap, unique_topic, [writer.create(flag_doc("a", "production")), b"{not json"])
    projector = _projector(client, kafka_bootstrap, unique_topic)
    await projector.start()
    try:
        with pytest.raises(PoisonEvent) as caught:
            await projector.run_until(lambda: asyncio.sleep(0, result=False), within=20)
    finally:
        await projector.stop()
    assert (caught.value.kind, caught.value.offset) == ("unparseable", 1)
    assert await client.get(f"fs:checkpoint:g-{unique_topic}:{unique_topic}:0") == "1"


async def test_projector__version_gap__raises_poison_event_without_skipping(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    writer = StreamWriter()
    created = writer.create(flag_doc("a", "production"))
    writer.configure("a", "production", on_config(True))  # version 2 lost
    third = writer.configure("a", "production", on_config(False))
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await publish(kafka_bootstrap, unique_topic, [created, third])
    projector = _projector(client, kafka_bootstrap, unique_topic)
    await projector.start()
    try:
        with pytest.raises(PoisonEvent) as caught:
            await projector.run_until(lambda: asyncio.sleep(0, result=False), within=20)
    finally:
        await projector.stop()
    assert (caught.value.kind, caught.value.version) == ("gap", 3)
    assert await client.get(f"fs:checkpoint:g-{unique_topic}:{unique_topic}:0") == "1"
