"""RedisReadModel on a real Redis: compare-and-set by version, duplicates, gaps, checkpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.evolve import replay
from core.model import Segment
from projections.connection import make_redis
from projections.documents import decode_env_doc
from projections.keys import Keyspace
from projections.readmodel import ApplyOutcome, Checkpoint, RedisReadModel
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


async def _snapshot(client: Redis) -> dict[str, object]:
    out: dict[str, object] = {}
    async for key in client.scan_iter("fs:*"):
        kind = await client.type(key)
        out[key] = (
            await client.hgetall(key)
            if kind == "hash"
            else (sorted(await client.smembers(key)) if kind == "set" else await client.get(key))
        )
    return out


async def test_apply__next_version__writes_state_docs_rev_and_checkpoint(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    created = writer.create(flag_doc("checkout", "production", "staging"))

    result = await model.apply(created, Checkpoint("g", "t", 0, 41))

    assert result.outcome is ApplyOutcome.APPLIED
    assert result.environments == ("production", "staging")
    assert (await model.load_flag_state("checkout")).version == 1
    version, flag = decode_env_doc(await client.hget("fs:env:production:flags", "checkout") or "")
    assert (version, list(flag.environments)) == (1, ["production"])
    assert await client.get("fs:env:production:rev") == "1"
    assert await client.get("fs:checkpoint:g:t:0") == "42"
    assert await client.smembers("fs:environments") == {"production", "staging"}


async def test_apply__duplicate_and_replay__change_nothing_but_checkpoint(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    events = [
        writer.create(flag_doc("checkout", "production")),
        writer.configure("checkout", "production", on_config(True)),
    ]
    for offset, event in enumerate(events):
        await model.apply(event, Checkpoint("g", "t", 0, offset))
    before = await _snapshot(client)

    outcomes = [(await model.apply(e, Checkpoint("g", "t", 0, 0))).outcome for e in events]

    assert outcomes == [ApplyOutcome.DUPLICATE, ApplyOutcome.DUPLICATE]
    assert (
        await _snapshot(client) == before
    )  # revision and checkpoint unchanged (checkpoint never moves back)


async def test_apply__duplicate_at_later_offset__moves_checkpoint_only(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    created = writer.create(flag_doc("checkout", "production"))
    await model.apply(created, Checkpoint("g", "t", 0, 0))

    result = await model.apply(created, Checkpoint("g", "t", 0, 7))

    assert result.outcome is ApplyOutcome.DUPLICATE
    assert await client.get("fs:checkpoint:g:t:0") == "8"
    assert await client.get("fs:env:production:rev") == "1"


async def test_apply__version_gap__reported_and_nothing_written(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    created = writer.create(flag_doc("checkout", "production"))
    writer.configure("checkout", "production", on_config(True))  # version 2 never delivered
    third = writer.configure("checkout", "production", on_config(False))
    await model.apply(created, Checkpoint("g", "t", 0, 0))
    before = await _snapshot(client)

    result = await model.apply(third, Checkpoint("g", "t", 0, 2))

    assert (result.outcome, result.stored_version) == (ApplyOutcome.GAP, 1)
    assert await _snapshot(client) == before


async def test_apply__env_change__touches_only_that_environment(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    await model.apply(writer.create(flag_doc("checkout", "production", "staging")))

    result = await model.apply(writer.configure("checkout", "staging", on_config(True)))

    assert result.environments == ("staging",)
    assert await client.get("fs:env:production:rev") == "1"
    assert await client.get("fs:env:staging:rev") == "2"


async def test_apply__change_notice__published_with_version_and_rev(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    pubsub = client.pubsub()
    await pubsub.subscribe("fs:env:production:changes")
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    await model.apply(writer.create(flag_doc("checkout", "production")))

    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    await pubsub.aclose()
    assert message is not None
    assert json.loads(message["data"]) == {"flag_key": "checkout", "version": 1, "rev": 1}


async def test_apply__archive__keeps_docs_marked_archived(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    await model.apply(writer.create(flag_doc("checkout", "production")))

    await model.apply(writer.archive("checkout"))

    version, flag = decode_env_doc(await client.hget("fs:env:production:flags", "checkout") or "")
    assert (version, flag.archived) == (2, True)


async def test_apply__segment_stream__writes_segments_hash(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()

    await model.apply(writer.create_segment(Segment(key="beta", included=("u1",))))

    doc = json.loads(await client.hget("fs:segments", "beta") or "{}")
    assert (doc["version"], doc["segment"]["included"]) == (1, ["u1"])
    assert await client.get("fs:segments:rev") == "1"


async def test_apply__many_events__state_equals_replay(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    events = [writer.create(flag_doc("checkout", "production"))]
    events += [writer.configure("checkout", "production", on_config(i % 2 == 0)) for i in range(20)]
    events.append(writer.metadata("checkout", name="Checkout v2"))

    for event in events + events[5:9]:
        await model.apply(event)

    assert await model.load_flag_state("checkout") == replay(events)


async def test_apply__other_namespace__leaves_live_keys_alone(client: Redis) -> None:
    shadow, writer = RedisReadModel(client, Keyspace("fs-shadow")), StreamWriter()

    await shadow.apply(writer.create(flag_doc("checkout", "production")))

    assert await client.exists("fs-shadow:state:checkout") == 1
    assert [k async for k in client.scan_iter("fs:*")] == []


async def test_apply__checkpoint_below_floor__behind_and_nothing_written(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    created = writer.create(flag_doc("checkout", "production"))

    result = await model.apply(created, Checkpoint("g", "t", 0, 5, floor=5))  # Redis "lost" offsets 0..4

    assert result.outcome is ApplyOutcome.BEHIND
    assert await _snapshot(client) == {}


async def test_apply__primed_state_stale__retried_from_redis(client: Redis) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    created = writer.create(flag_doc("checkout", "production"))
    second = writer.configure("checkout", "production", on_config(True))
    await model.prime_states(["checkout"])  # primed at version 0
    await RedisReadModel(client).apply(created)  # another writer moves the stream to version 1

    result = await model.apply(second)

    assert result.outcome is ApplyOutcome.APPLIED
    assert await model.load_flag_state("checkout") == replay([created, second])
