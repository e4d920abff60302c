"""Fixtures: a dead-letter store on a fresh database, a Redis client on a flushed DB, a topic."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from events.deadletters import DeadLetterStore
from projections.connection import make_redis
from tests.integration.deadletters.conftest import dead_letters_migration
from tests.integration.projections.kafka_helpers import create_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def dlq(fresh_database: str) -> AsyncIterator[DeadLetterStore]:
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=6, command_timeout=10)
    assert pool is not None
    try:
        await pool.execute(dead_letters_migration())
        yield DeadLetterStore(pool)
    finally:
        await pool.close()


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


@pytest.fixture
async def topic(kafka_bootstrap: str, unique_topic: str) -> str:
    """A one-partition topic: offsets give the order the tests reason about."""
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    return unique_topic
