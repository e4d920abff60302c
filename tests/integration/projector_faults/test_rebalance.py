"""Issue 9 §2.3 on real tansu: a rebalance during a batch. Two projectors in one consumer group;
the second joins while the first is in the middle of a batch (held there until the rebalance
reached the first's group listener), then leaves; the stream keeps flowing throughout.

On the old code the first projector's rebalance callbacks ran beside its batch: the batch, failing
on a Redis blink, sought records of partitions already handed to the second and died with
``IllegalStateError``. Now batch and callbacks share one lock and nothing unassigned is sought."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from projections.errors import ReadModelUnavailable
from projections.projector import Projector
from projections.readmodel import ApplyResult, Checkpoint, RedisReadModel
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration

FLAGS = [f"r-{i}" for i in range(6)]


class _HeldBatch(RedisReadModel):
    """Once armed, the next batched apply waits for ``release`` and then fails as a Redis blink."""

    def __init__(self, client: Redis) -> None:
        super().__init__(client)
        self.armed = False
        self.in_batch = asyncio.Event()
        self.release = asyncio.Event()

    async def apply_many(self, items: Sequence[tuple[Event, Checkpoint]]) -> list[ApplyResult | None]:
        if self.armed:
            self.armed = False
            self.in_batch.set()
            await self.release.wait()
            raise ReadModelUnavailable("redis blinked while the group rebalanced")
        return await super().apply_many(items)


def _projector(model: RedisReadModel, bootstrap: str, topic: str, name: str) -> Projector:
    return Projector(
        model,
        bootstrap_servers=bootstrap,
        topic=topic,
        group=f"g-{topic}",
        client_id=name,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        max_records=50,
    )


def _changes(writer: StreamWriter, rounds: int) -> list[Event]:
    return [
        writer.configure(flag, "production", on_config(round_ % 2 == 0))
        for round_ in range(rounds)
        for flag in FLAGS
    ]


async def _until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def test_rebalance__second_projector_joins_mid_batch_and_leaves__nothing_lost(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    writer = StreamWriter()
    events = [writer.create(flag_doc(flag, "production")) for flag in FLAGS] + _changes(writer, 5)
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    await publish(kafka_bootstrap, unique_topic, events)
    held = _HeldBatch(client)
    first = _projector(held, kafka_bootstrap, unique_topic, "first")
    second = _projector(RedisReadModel(client), kafka_bootstrap, unique_topic, "second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    await first.start()
    first_task = asyncio.create_task(first.run(stop_first, poll_timeout=0.1))
    second_task: asyncio.Task[None] | None = None
    overlapped: list[bool] = []

    async def alive() -> None:
        if first_task.done():
            first_task.result()  # raises what killed the first projector
            raise AssertionError("the first projector stopped by itself")

    try:

        async def first_applied() -> bool:
            await alive()
            return first.applied > 0

        await _until(first_applied, 20, "the first projector applies")
        held.armed = True
        more = _changes(writer, 5)
        await publish(kafka_bootstrap, unique_topic, more)
        events += more
        await asyncio.wait_for(held.in_batch.wait(), 20)
        await second.start()  # joins the group while the first is held inside its batch
        second_task = asyncio.create_task(second.run(stop_second, poll_timeout=0.1))

        async def rebalance_reached_first() -> bool:
            lock = getattr(first, "_lock", None)  # new code: the callback waits for the batch
            waiting = lock is not None and bool(getattr(lock, "_waiters", None))
            if waiting:
                overlapped.append(True)
            return waiting or bool(second._consumer.assignment())  # old code: it went ahead

        await _until(rebalance_reached_first, 20, "the rebalance reaches the first projector")
        held.release.set()

        async def second_assigned() -> bool:
            await alive()
            return bool(second._consumer.assignment())

        await _until(second_assigned, 20, "the second projector gets partitions")
        more = _changes(writer, 5)
        await publish(kafka_bootstrap, unique_topic, more)
        events += more
        stop_second.set()
        await second_task
        await second.stop()  # leaves the group mid-stream
        more = _changes(writer, 5)
        await publish(kafka_bootstrap, unique_topic, more)
        events += more
        expected = {flag: replay([e for e in events if e.flag_key == flag]) for flag in FLAGS}

        async def equal_to_replay() -> bool:
            await alive()
            return {flag: await held.load_flag_state(flag) for flag in FLAGS} == expected

        await _until(equal_to_replay, 30, "read model == replay")
        assert overlapped, "the rebalance callback never waited for the batch: no overlap shown"
    finally:
        stop_first.set()
        stop_second.set()
        held.release.set()
        if second_task is not None and not second_task.done():
            await second_task
        await asyncio.gather(first_task, return_exceptions=True)
        await first.stop()
        await second.stop()
