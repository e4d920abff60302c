"""AttributeCatalog on a real Redis: names and types only, bounded, and never a preview's failure."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.model import Flag
from events.commands.attributes import AttributeCatalog
from projections.connection import make_redis

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = make_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_catalog__types_merged_values_never_stored(redis: Redis) -> None:
    namespace = "t-" + uuid.uuid4().hex[:8]
    catalog = AttributeCatalog(redis, namespace)
    await catalog.record_contexts(
        [{"email": "a@b.example", "age": 3}, {"age": "three", "geo": {"country": "FR"}}]
    )

    described = {a["name"]: a for a in await catalog.describe([Flag(key="f")], [])}

    assert described["age"]["types"] == ["number", "string"] and described["age"]["examples"] == []
    assert described["geo.country"]["sources"] == ["contexts"]
    raw = await redis.hgetall(f"{namespace}:attributes:contexts")
    assert "a@b.example" not in repr(raw) and "FR" not in repr(raw)
    await redis.delete(f"{namespace}:attributes:contexts")


async def test_catalog__full__new_names_dropped_known_names_still_typed(redis: Redis) -> None:
    namespace = "t-" + uuid.uuid4().hex[:8]
    catalog = AttributeCatalog(redis, namespace, max_names=2)
    await catalog.record_contexts([{"a": 1, "b": 2, "c": 3}])
    await catalog.record_contexts([{"a": "x", "d": 4}])

    described = {a["name"]: a["types"] for a in await catalog.describe([], [])}

    assert described == {"a": ["number", "string"], "b": ["number"]}
    await redis.delete(f"{namespace}:attributes:contexts")


async def test_catalog__redis_unreachable__recording_is_best_effort() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_redis(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, connect_timeout=0.2, retries=0)
    try:
        await AttributeCatalog(client, "t").record_contexts([{"a": 1}])  # must not raise
    finally:
        await client.aclose()
