"""Rebuild into a shadow namespace, drift check and atomic switch, on real Kafka and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from core.state import FlagState
from projections.connection import make_redis
from projections.documents import encode_env_doc
from projections.errors import SwitchRefused
from projections.projector import Projector
from projections.reader import EnvironmentReader
from projections.readmodel import RedisReadModel
from projections.rebuild import ShadowRebuild
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration
NOW = datetime(2026, 6, 1, tzinfo=UTC)
USER = {"targetingKey": "user-1"}


def _history() -> list[Event]:
    writer = StreamWriter()
    events = [writer.create(flag_doc(f"flag-{i}", "production", "staging")) for i in range(4)]
    for round_ in range(5):
        events += [writer.configure(f"flag-{i}", "production", on_config(round_ % 2 == 0)) for i in range(4)]
    return events


def _expected(events: list[Event]) -> dict[str, FlagState]:
    return {k: replay([e for e in events if e.flag_key == k]) for k in sorted({e.flag_key for e in events})}


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


@pytest.fixture
async def topic(kafka_bootstrap: str, unique_topic: str) -> AsyncIterator[str]:
    await create_topic(kafka_bootstrap, unique_topic, partitions=2)
    yield unique_topic


async def _project_live(client: Redis, bootstrap: str, topic: str, events: list[Event]) -> None:
    projector = Projector(
        RedisReadModel(client),
        bootstrap_servers=bootstrap,
        topic=topic,
        group="live",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )
    expected = _expected(events)

    async def caught_up() -> bool:
        return {k: await projector.read_model.load_flag_state(k) for k in expected} == expected

    await projector.start()
    try:
        await projector.run_until(caught_up, within=30)
    finally:
        await projector.stop()


def _rebuild(client: Redis, bootstrap: str, topic: str) -> ShadowRebuild:
    return ShadowRebuild(client, bootstrap_servers=bootstrap, topic=topic, group="live", idle=0.3)


async def test_check__live_projection_from_same_log__zero_drift(
    client: Redis, kafka_bootstrap: str, topic: str
) -> None:
    events = _history()
    await publish(kafka_bootstrap, topic, events)
    await _project_live(client, kafka_bootstrap, topic, events)

    async with _rebuild(client, kafka_bootstrap, topic) as rebuild:
        report = await rebuild.run(switch=False)

    assert report.drift == []
    assert (report.events, report.applied, report.switched) == (len(events), len(events), False)
    assert await client.get("fs:state:flag-0") is not None  # live untouched


async def test_check__tampered_live_document__reported_as_drift(
    client: Redis, kafka_bootstrap: str, topic: str
) -> None:
    events = _history()
    await publish(kafka_bootstrap, topic, events)
    await _project_live(client, kafka_bootstrap, topic, events)
    await client.hset(
        "fs:env:staging:flags", "flag-2", encode_env_doc(flag_doc("flag-2", "staging"), "staging", 99)
    )

    async with _rebuild(client, kafka_bootstrap, topic) as rebuild:
        report = await rebuild.run(switch=False, attempts=1)

    assert report.drift == ["env:staging:flags/flag-2"]


async def test_rebuild__corrupted_live_model__switch_restores_replay_and_readers_follow(
    client: Redis, kafka_bootstrap: str, topic: str, fresh_redis: str
) -> None:
    events = _history()
    await publish(kafka_bootstrap, topic, events)
    await _project_live(client, kafka_bootstrap, topic, events)
    reader = EnvironmentReader(fresh_redis, "production", poll_interval=0.2)
    await reader.start()
    served_before = reader.evaluate("flag-1", USER, NOW).value
    await client.hset(
        "fs:env:production:flags",
        "flag-1",
        encode_env_doc(flag_doc("flag-1", "production"), "production", 99),
    )
    await client.incr("fs:env:production:rev")
    await client.delete("fs:state:flag-3")
    assert await reader.wait_for_version("flag-1", 99, within=5.0)  # the reader sees the corruption

    try:
        async with _rebuild(client, kafka_bootstrap, topic) as rebuild:
            report = await rebuild.run(switch=True)
        assert report.switched

        model = RedisReadModel(client)
        assert {k: await model.load_flag_state(k) for k in _expected(events)} == _expected(events)
        assert [k async for k in client.scan_iter("fs-shadow:*")] == []
        await _eventually_version(reader, "flag-1", _expected(events)["flag-1"].version)
        assert reader.evaluate("flag-1", USER, NOW).value == served_before
    finally:
        await reader.stop()

    async with _rebuild(client, kafka_bootstrap, topic) as again:
        assert (await again.run(switch=False)).drift == []


async def test_rebuild__redis_wiped__switch_restores_every_state(
    client: Redis, kafka_bootstrap: str, topic: str
) -> None:
    events = _history()
    await publish(kafka_bootstrap, topic, events)
    await _project_live(client, kafka_bootstrap, topic, events)
    await client.flushdb()

    async with _rebuild(client, kafka_bootstrap, topic) as rebuild:
        assert (await rebuild.run(switch=True)).switched

    model = RedisReadModel(client)
    assert {k: await model.load_flag_state(k) for k in _expected(events)} == _expected(events)
    assert await client.exists(f"fs:checkpoint:live:{topic}:0", f"fs:checkpoint:live:{topic}:1") == 2


async def _eventually_version(reader: EnvironmentReader, key: str, version: int) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 5
    while reader.version_of(key) != version:
        assert time.monotonic() < deadline, f"reader stuck at {reader.version_of(key)}"
        await asyncio.sleep(0.02)


async def test_switch__shadow_behind_live__refused_and_live_untouched(
    client: Redis, kafka_bootstrap: str, topic: str
) -> None:
    events = _history()
    await publish(kafka_bootstrap, topic, events)
    await _project_live(client, kafka_bootstrap, topic, events)

    async with _rebuild(client, kafka_bootstrap, topic) as rebuild:
        await rebuild.catch_up()
        await client.incrby(f"fs:checkpoint:live:{topic}:0", 1000)  # live "ahead" of the log read so far
        before = await client.get("fs:state:flag-0")
        with pytest.raises(SwitchRefused):
            await rebuild.switch()

    assert await client.get("fs:state:flag-0") == before
