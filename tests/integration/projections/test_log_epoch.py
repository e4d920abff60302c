"""Issue 9 §2.1 and §2.7 on real tansu and Redis: a republished (shorter) log in a new epoch is
replayed from its beginning; an event whose prev_hash does not chain is not applied."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from events.kafka.records import headers_for
from projections.connection import make_redis
from projections.errors import PoisonEvent
from projections.projector import Projector
from projections.readmodel import ApplyOutcome, RedisReadModel
from tests.integration.projections.kafka_helpers import create_topic
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


def _projector(client: Redis, bootstrap: str, topic: str) -> Projector:
    return Projector(
        RedisReadModel(client),
        bootstrap_servers=bootstrap,
        topic=topic,
        group=f"g-{topic}",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


async def _publish(bootstrap: str, topic: str, events: list[Event], epoch: int) -> None:
    """As the relay does: keyed by stream, stamped with the log epoch."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                event.to_json().encode(),
                key=event.flag_key.encode(),
                partition=0,
                headers=headers_for(event, log_epoch=epoch),
            )
    finally:
        await producer.stop()


async def _recreate(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    await create_topic(bootstrap, topic, partitions=1)


async def test_log_lost__republished_shorter_in_new_epoch__projector_replays_it(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    writer = StreamWriter()
    old = [writer.create(flag_doc("e", "production"))]
    old += [writer.configure("e", "production", on_config(i % 2 == 0)) for i in range(5)]
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await _publish(kafka_bootstrap, unique_topic, old + old, epoch=0)  # with retry duplicates: 12 records
    first = _projector(client, kafka_bootstrap, unique_topic)
    await first.start()
    try:

        async def at_end() -> bool:
            return await first.read_model.checkpoint(first.group, unique_topic, 0) == 12

        await first.run_until(at_end, within=30)
    finally:
        await first.stop()
    # the broker lost its log; the relay republishes without the duplicates, in epoch 1, then more
    later = [writer.configure("e", "production", on_config(False)) for _ in range(3)]
    await _recreate(kafka_bootstrap, unique_topic)
    await _publish(kafka_bootstrap, unique_topic, old + later, epoch=1)  # 9 records < checkpoint 12
    second = _projector(client, kafka_bootstrap, unique_topic)
    await second.start()
    try:

        async def caught_up() -> bool:
            return (await second.read_model.load_flag_state("e")).version == len(old) + len(later)

        await second.run_until(caught_up, within=30)
        position = await second.read_model.position(second.group, unique_topic, 0)
        assert await second.read_model.load_flag_state("e") == replay(old + later)
        assert position[1] == 1  # the checkpoint now belongs to epoch 1

        # a record of the old epoch (sent before the relay noticed the loss) is dropped...
        stale = writer.configure("e", "production", on_config(True))
        marker = StreamWriter().create(flag_doc("marker", "production"))
        await _publish(kafka_bootstrap, unique_topic, [stale], epoch=0)
        await _publish(kafka_bootstrap, unique_topic, [marker], epoch=1)

        async def marker_seen() -> bool:
            return (await second.read_model.load_flag_state("marker")).version == 1

        await second.run_until(marker_seen, within=30)
        assert (await second.read_model.load_flag_state("e")).version == len(old) + len(later)
        # ... and applied when the relay republishes it in the new epoch
        await _publish(kafka_bootstrap, unique_topic, [stale], epoch=1)

        async def stale_applied() -> bool:
            return (await second.read_model.load_flag_state("e")).version == stale.version

        await second.run_until(stale_applied, within=30)
    finally:
        await second.stop()
    assert await second.read_model.load_flag_state("e") == replay(old + later + [stale])


async def test_apply__right_version_wrong_prev_hash__not_applied_and_poison(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    writer, forger = StreamWriter(), StreamWriter()
    created = writer.create(flag_doc("c", "production"))
    forger.create(flag_doc("c", "production", "staging"))  # another v1: another hash
    forged = forger.configure("c", "production", on_config(True))  # v2, prev_hash of the other v1
    model = RedisReadModel(client)
    assert (await model.apply(created)).outcome is ApplyOutcome.APPLIED
    assert (await model.apply(forged)).outcome is ApplyOutcome.CHAIN
    assert await model.load_flag_state("c") == replay([created])
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await _publish(kafka_bootstrap, unique_topic, [created, forged], epoch=0)
    projector = _projector(client, kafka_bootstrap, unique_topic)
    await projector.start()
    try:
        with pytest.raises(PoisonEvent) as caught:  # without a dead-letter queue, as a gap: it stops
            await projector.run_until(lambda: _never(), within=30)
    finally:
        await projector.stop()
    assert (caught.value.kind, caught.value.version) == ("chain", 2)
    assert await model.load_flag_state("c") == replay([created])
    assert await model.checkpoint(projector.group, unique_topic, 0) == 1  # not moved past it


async def _never() -> bool:
    return False
