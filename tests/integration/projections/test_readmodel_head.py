"""The apply script's head key and log epoch on a real Redis (issue 9 §2.1, §2.7)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.evolve import replay
from projections.connection import make_redis
from projections.readmodel import ApplyOutcome, Checkpoint, RedisReadModel
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


async def test_apply__writes_head_beside_state(client: Redis) -> None:
    writer = StreamWriter()
    created = writer.create(flag_doc("h", "production"))
    await RedisReadModel(client).apply(created)
    assert await client.get("fs:head:h") == f"1:{created.hash}"


async def test_apply__state_without_head__decoded_once_chain_checked_head_written(client: Redis) -> None:
    """A layout from before the head key: the script falls back to the state's version and hash."""
    writer, forger = StreamWriter(), StreamWriter()
    created = writer.create(flag_doc("o", "production"))
    await client.set("fs:state:o", replay([created]).model_dump_json())  # the old layout: no head
    forger.create(flag_doc("o", "production", "staging"))
    forged = forger.configure("o", "production", on_config(True))
    model = RedisReadModel(client)

    assert (await model.apply(forged)).outcome is ApplyOutcome.CHAIN
    assert await client.get("fs:head:o") is None  # nothing written

    good = writer.configure("o", "production", on_config(True))
    assert (await model.apply(good)).outcome is ApplyOutcome.APPLIED
    assert await client.get("fs:head:o") == f"2:{good.hash}"
    assert await model.load_flag_state("o") == replay([created, good])


async def test_apply__other_log_epoch__refused_until_reset(client: Redis) -> None:
    writer = StreamWriter()
    created = writer.create(flag_doc("e", "production"))
    model = RedisReadModel(client)
    await client.set("fs:checkpoint:g:t:0", 12)

    refused = await model.apply(created, Checkpoint("g", "t", 0, 3, epoch=1))
    assert (refused.outcome, await model.position("g", "t", 0)) == (ApplyOutcome.EPOCH, (12, 0))

    assert await model.reset_epoch("g", "t", 0, 1) == 1
    assert await model.reset_epoch("g", "t", 0, 0) == 1  # only forward
    assert await model.position("g", "t", 0) == (0, 1)
    applied = await model.apply(created, Checkpoint("g", "t", 0, 3, floor=0, epoch=1))
    assert (applied.outcome, await model.position("g", "t", 0)) == (ApplyOutcome.APPLIED, (4, 1))
