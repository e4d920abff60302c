"""The projector's batched path (RedisReadModel.apply_many) against the one-at-a-time path.

Both paths run over the same records on one real Redis, each in its own namespace, and must
leave the same keys (states, documents, revision counters, environments, checkpoints) and
report the same outcomes, whatever the batch mixes: duplicates, several flags, a version gap,
two partitions, a concurrent writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.readmodel import ApplyOutcome, Checkpoint, RedisReadModel
from projections.resilience import advance_checkpoint
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration

_GROUP, _TOPIC = "g", "t"
Partitions = dict[int, list[Event]]
Outcomes = dict[int, list[ApplyOutcome]]


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


async def _dump(client: Redis, namespace: str) -> dict[str, object]:
    """Every key of a namespace with its value, the namespace prefix removed."""
    out: dict[str, object] = {}
    async for key in client.scan_iter(f"{namespace}:*"):
        kind = await client.type(key)
        value: object
        if kind == "hash":
            value = await client.hgetall(key)
        elif kind == "set":
            value = sorted(await client.smembers(key))
        else:
            value = await client.get(key)
        out[key.removeprefix(f"{namespace}:")] = value
    return out


class _Partitions:
    """Checkpoints with floors chained the way the projector chains them."""

    def __init__(self, model: RedisReadModel) -> None:
        self.model = model
        self.floors: dict[int, int | None] = {}
        self.outcomes: Outcomes = {}

    def checkpoint(self, partition: int, offset: int, floor: int | None) -> Checkpoint:
        return Checkpoint(_GROUP, _TOPIC, partition, offset, floor)

    async def one(self, partition: int, offset: int, event: Event) -> None:
        """The one-at-a-time path; a gap is parked by the projector: the checkpoint moves past it."""
        checkpoint = self.checkpoint(partition, offset, self.floors.get(partition))
        result = await self.model.apply(event, checkpoint)
        if result.outcome is ApplyOutcome.GAP:
            assert await advance_checkpoint(self.model, checkpoint) is ApplyOutcome.DUPLICATE
        self.outcomes.setdefault(partition, []).append(result.outcome)
        self.floors[partition] = offset + 1

    async def batch(self, runs: dict[int, tuple[int, list[Event]]]) -> dict[int, int]:
        """One apply_many over each partition's run (first offset, events); how many went as planned."""
        items: list[tuple[Event, Checkpoint]] = []
        owners: list[tuple[int, int]] = []
        for partition, (start, events) in runs.items():
            floor = self.floors.get(partition)
            for offset, event in enumerate(events, start):
                items.append((event, self.checkpoint(partition, offset, floor)))
                owners.append((partition, offset))
                floor = offset + 1
        accepted = dict.fromkeys(runs, 0)
        stopped: set[int] = set()
        for (partition, offset), result in zip(owners, await self.model.apply_many(items), strict=True):
            if result is None or partition in stopped:
                stopped.add(partition)
                continue
            self.outcomes.setdefault(partition, []).append(result.outcome)
            self.floors[partition] = offset + 1
            accepted[partition] += 1
        return accepted


async def _one_at_a_time(model: RedisReadModel, partitions: Partitions) -> Outcomes:
    path = _Partitions(model)
    for partition, events in partitions.items():
        for offset, event in enumerate(events):
            await path.one(partition, offset, event)
    return path.outcomes


async def _batched(model: RedisReadModel, partitions: Partitions) -> tuple[Outcomes, dict[int, int]]:
    """Like Projector.process_batch: every partition's run in one round trip, then per partition
    the first unplanned record one at a time and the rest batched again. Also returns how many
    records of each partition the first round trip took."""
    path = _Partitions(model)
    await model.prime_states({e.flag_key for events in partitions.values() for e in events})
    first = await path.batch({p: (0, events) for p, events in partitions.items()})
    for partition, events in partitions.items():
        done = first[partition]
        while done < len(events):
            await path.one(partition, done, events[done])
            done += 1
            if done < len(events):
                done += (await path.batch({partition: (done, events[done:])}))[partition]
    return path.outcomes, first


def _mixed_batch() -> Partitions:
    w = StreamWriter()
    alpha1, beta1 = (
        w.create(flag_doc("alpha", "production", "staging")),
        w.create(flag_doc("beta", "production")),
    )
    alpha2, beta2 = (
        w.configure("alpha", "production", on_config()),
        w.configure("beta", "production", on_config()),
    )
    beta3, beta4 = w.configure("beta", "production", on_config(False)), w.metadata("beta", description="x")
    alpha3 = w.configure("alpha", "staging", on_config())
    gamma = [w.create(flag_doc("gamma", "production"))] + [
        w.configure("gamma", "production", on_config(i % 2 == 0)) for i in range(3)
    ]
    return {
        0: [alpha1, beta1, alpha2, alpha1, beta2, beta4, alpha3, beta3, beta4, alpha2],
        1: [gamma[0], gamma[1], gamma[0], gamma[2], gamma[3], gamma[3]],
    }


async def test_apply_many__duplicates_two_flags_and_a_gap__same_redis_and_outcomes_as_one_at_a_time(
    client: Redis,
) -> None:
    partitions = _mixed_batch()
    batched = RedisReadModel(client, Keyspace("fs-a"))
    single = RedisReadModel(client, Keyspace("fs-b"))

    outcomes, first = await _batched(batched, partitions)
    expected = await _one_at_a_time(single, partitions)

    applied, dup, gap = ApplyOutcome.APPLIED, ApplyOutcome.DUPLICATE, ApplyOutcome.GAP
    assert expected == {
        0: [applied, applied, applied, dup, applied, gap, applied, applied, applied, dup],
        1: [applied, applied, dup, applied, applied, dup],
    }
    assert outcomes == expected
    assert first == {0: 5, 1: 6}  # the gap (beta v4 before v3) stopped partition 0's plan only
    assert await _dump(client, "fs-a") == await _dump(client, "fs-b")
    assert (await batched.load_flag_state("beta")).version == 4


async def test_apply_many__stream_changed_under_the_plan__falls_back_and_ends_like_replay(
    client: Redis,
) -> None:
    w = StreamWriter()
    alpha = [w.create(flag_doc("alpha", "production")), w.configure("alpha", "production", on_config())]
    alpha.append(w.configure("alpha", "production", on_config(False)))
    beta = w.create(flag_doc("beta", "production"))
    model, other = RedisReadModel(client), RedisReadModel(client)
    await model.apply(alpha[0], Checkpoint(_GROUP, _TOPIC, 0, 0))
    await model.prime_states(["alpha", "beta"])  # the plan will start from alpha v1...
    await other.apply(alpha[1])  # ...but another writer moves it to v2 first

    path = _Partitions(model)
    path.floors[0] = 1
    first = await path.batch({0: (1, [alpha[1], alpha[2], beta])})
    for offset, event in enumerate([alpha[1], alpha[2], beta][first[0] :], 1 + first[0]):
        await path.one(0, offset, event)

    assert first == {0: 0}  # alpha v2 came back a duplicate: nothing of the plan is trusted
    assert (await model.load_flag_state("alpha")) == replay(alpha)
    assert (await model.load_flag_state("beta")) == replay([beta])
    assert await client.get(f"fs:checkpoint:{_GROUP}:{_TOPIC}:0") == "4"
