"""Evaluated contexts reach the attribute catalog (sampled; names and types, never values), on a
real Redis and through POST /api/v1/evaluate on the real stack."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from events.commands.attributes import SAMPLE_EVERY, AttributeCatalog, ContextSampler
from projections.connection import make_redis
from tests.integration.management.support import create_flag, save_config
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = make_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # polling a condition, bounded by the deadline


async def test_evaluate__context_attribute__listed_by_attributes_with_type_never_value(
    platform: Platform,
) -> None:
    flag = "f-" + uuid.uuid4().hex[:10]
    await create_flag(platform, {"key": flag})
    await save_config(platform, flag, "prod", {"enabled": True, "default": {"variation": "on"}})
    name = "seen_" + uuid.uuid4().hex[:8]
    secret = f"{uuid.uuid4().hex}@private.example"
    context = {"targetingKey": "u1", name: secret, "profile": {"age": 41}}

    # one context in SAMPLE_EVERY is observed: any SAMPLE_EVERY evaluations in a row include one
    for _ in range(SAMPLE_EVERY):
        answer = await platform.request(
            "POST", "/api/v1/evaluate", role="reader", json={"environment": "prod", "context": context}
        )
        assert answer.status_code == 200, answer.text
    listed = await platform.request("GET", "/api/v1/attributes", role="reader")

    assert listed.status_code == 200
    found = {a["name"]: a for a in listed.json()["items"]}
    assert found[name]["types"] == ["string"] and found[name]["sources"] == ["contexts"]
    assert found[name]["examples"] == []
    assert found["profile.age"]["types"] == ["number"]
    raw = await platform.redis.hgetall(f"{platform.settings.redis_namespace}:attributes:contexts")
    assert secret not in listed.text and secret not in repr(raw)


async def test_sampler__new_name__flushed_at_once_then_at_most_every_interval(
    redis: Redis, clock: _Clock
) -> None:
    namespace = "t-" + uuid.uuid4().hex[:8]
    catalog = AttributeCatalog(redis, namespace)
    sampler = ContextSampler(flush_seconds=5.0, clock=clock)

    assert sampler.observe({"a": 1}) is True  # new, and never flushed: due now
    sampler.start_flush(catalog)

    async def stored() -> bool:
        return {a["name"] for a in await catalog.describe([], [])} == {"a"}

    await _until(stored)
    assert sampler.observe({"a": 2}) is False  # nothing new
    assert sampler.observe({"b": "x"}) is False  # new, but the last flush was just now
    clock.now += 5.0
    assert sampler.observe({"a": 3}) is True  # "b" still pending, interval over
    await sampler.flush(catalog)

    assert {a["name"] for a in await catalog.describe([], [])} == {"a", "b"}
    await redis.delete(f"{namespace}:attributes:contexts")


async def test_sampler__flush_running__no_second_flush_started(redis: Redis, clock: _Clock) -> None:
    namespace = "t-" + uuid.uuid4().hex[:8]
    sampler = ContextSampler(flush_seconds=0.0, clock=clock)
    assert sampler.observe({"a": 1})
    sampler.start_flush(AttributeCatalog(redis, namespace))

    assert sampler.observe({"b": 1}) is False  # the task has not run yet

    await sampler.flush(AttributeCatalog(redis, namespace))
    await redis.delete(f"{namespace}:attributes:contexts")


async def test_sampler__redis_unreachable__kept_pending_and_stored_later(redis: Redis) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = make_redis(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, connect_timeout=0.2, retries=0)
    namespace = "t-" + uuid.uuid4().hex[:8]
    sampler = ContextSampler()
    sampler.observe({"kept": True})
    try:
        await sampler.flush(AttributeCatalog(down, namespace))  # must not raise
    finally:
        await down.aclose()

    await sampler.flush(AttributeCatalog(redis, namespace))

    assert [a["name"] for a in await AttributeCatalog(redis, namespace).describe([], [])] == ["kept"]
    await redis.delete(f"{namespace}:attributes:contexts")
