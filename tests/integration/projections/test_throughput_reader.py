"""EnvironmentReader under a burst of change notices (applied together, one round trip)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from core.model import Segment
from projections.connection import make_redis
from projections.reader import EnvironmentReader
from projections.readmodel import Checkpoint, RedisReadModel
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration
NOW = datetime(2026, 6, 1, tzinfo=UTC)
USER = {"targetingKey": "user-1", "country": "FR"}


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


async def _started(url: str) -> EnvironmentReader:
    reader = EnvironmentReader(url, "production", poll_interval=60.0)  # notices only: no polling
    await reader.start()
    return reader


async def test_reader__burst_of_notices__snapshot_equals_a_fresh_load(
    client: Redis, fresh_redis: str
) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    for i in range(5):
        await model.apply(writer.create(flag_doc(f"flag-{i}", "production")))
    reader = await _started(fresh_redis)
    burst = [writer.create_segment(Segment(key="beta", included=("user-1",)))]
    burst += [writer.create(flag_doc(f"flag-{i}", "production")) for i in range(5, 40)]
    for round_ in range(3):
        burst += [writer.configure(f"flag-{i}", "production", on_config(round_ != 1)) for i in range(40)]
    items = [(event, Checkpoint("g", "t", 0, offset)) for offset, event in enumerate(burst)]
    try:
        await model.prime_states({e.flag_key for e in burst})
        results = await model.apply_many(items)  # one pipeline: the notices arrive together
        assert all(result is not None for result in results)
        deadline = time.monotonic() + 5
        while any(reader.version_of(f"flag-{i}") != 4 for i in range(40)):
            assert time.monotonic() < deadline, "the burst did not reach the reader in time"
            await asyncio.sleep(0.02)
        fresh = await _started(fresh_redis)
        try:
            assert reader.revision == fresh.revision == int(await client.get("fs:env:production:rev") or 0)
            assert reader.evaluate_all(USER, NOW) == fresh.evaluate_all(USER, NOW)
            assert {f"flag-{i}": reader.version_of(f"flag-{i}") for i in range(40)} == {
                f"flag-{i}": fresh.version_of(f"flag-{i}") for i in range(40)
            }
        finally:
            await fresh.stop()
    finally:
        await reader.stop()
