"""ReadModelQueries (the API's flag reads) and ReaderPool on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.model import Segment
from projections.connection import make_redis
from projections.pool import ReaderPool
from projections.queries import ReadModelQueries
from projections.readmodel import Checkpoint, RedisReadModel
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    model, writer = RedisReadModel(redis), StreamWriter()
    await model.apply(writer.create(flag_doc("b", "production", "staging")), Checkpoint("g", "t", 0, 0))
    await model.apply(writer.create(flag_doc("a", "staging")), Checkpoint("g", "t", 1, 0))
    await model.apply(writer.configure("b", "production", on_config(True)), Checkpoint("g", "t", 0, 1))
    await model.apply(writer.create_segment(Segment(key="beta")))
    yield redis
    await redis.aclose()


async def test_list_flags__all__whole_flags_sorted_without_segments(client: Redis) -> None:
    views = await ReadModelQueries(client).list_flags()

    assert [(v.key, v.version, sorted(v.flag.environments)) for v in views] == [
        ("a", 1, ["staging"]),
        ("b", 2, ["production", "staging"]),
    ]


async def test_list_flags__one_environment__its_documents_only(client: Redis) -> None:
    views = await ReadModelQueries(client).list_flags("production")

    assert [(v.key, v.version, list(v.flag.environments)) for v in views] == [("b", 2, ["production"])]


async def test_get_flag__known_and_unknown(client: Redis) -> None:
    queries = ReadModelQueries(client)

    state = await queries.get_flag("b")

    assert state is not None and state.version == 2
    assert await queries.get_flag("missing") is None
    assert await queries.get_flag("segment:beta") is None


async def test_environments_and_checkpoints(client: Redis) -> None:
    queries = ReadModelQueries(client)

    assert await queries.environments() == ["production", "staging"]
    assert await queries.checkpoints("g", "t") == {0: 2, 1: 1}


async def test_reader_pool__same_environment_twice__one_started_reader(
    fresh_redis: str, client: Redis
) -> None:
    pool = ReaderPool(fresh_redis, poll_interval=0.2)
    try:
        first = await pool.get("production")
        second = await pool.get("production")
        staging = await pool.get("staging")

        assert first is second and first is not staging
        assert (first.version_of("b"), staging.version_of("a")) == (2, 1)
        assert set(pool.readers) == {"production", "staging"}
    finally:
        await pool.close()
