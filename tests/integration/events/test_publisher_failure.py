"""With the broker gone, a publish fails within its bound and the relay's checkpoint stays put;
once a broker is back, the same events are published from the checkpoint.

Runs its own tansu broker (killed and restarted here), not the session one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.errors import PublishFailed
from events.kafka.adapter import KafkaPublisher, ensure_topics, flag_events_spec, make_producer
from events.relay.relay import Relay
from events.store.postgres import PostgresEventStore
from runtime.processes import find_free_port
from runtime.servers import KafkaServer
from tests.integration.events.kafka_log import read_topic
from tests.unit.events.factories import make_chain

TOPIC = "flagstream.flag-events"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaServer]:
    broker = KafkaServer(tmp_path / "kafka", find_free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(grace_seconds=5)


async def test_relay__broker_killed__publish_fails_in_bound_checkpoint_kept_then_resumes(
    own_broker: KafkaServer, store: PostgresEventStore
) -> None:
    await ensure_topics(own_broker.url, [flag_events_spec(TOPIC, partitions=1)])
    producer = make_producer(own_broker.url, request_timeout_ms=2_000)
    await producer.start()
    try:
        relay = Relay(store, KafkaPublisher(producer, TOPIC, send_timeout=3), topic=TOPIC)
        await store.append(make_chain("f", 2))
        assert await relay.run_once() == 2
        published_up_to = relay.position
        assert published_up_to is not None

        await asyncio.to_thread(own_broker.kill)
        more = make_chain("g", 2)
        await store.append(more)
        started = asyncio.get_running_loop().time()
        with pytest.raises(PublishFailed):
            await relay.run_once()
        assert asyncio.get_running_loop().time() - started < 10
        assert await store.load_checkpoint(relay.name) == published_up_to
        assert relay.position == published_up_to

        await asyncio.to_thread(own_broker.start)  # tansu keeps nothing: an empty broker
        await ensure_topics(own_broker.url, [flag_events_spec(TOPIC, partitions=1)])
        await _eventually_published(relay)
        assert await store.load_checkpoint(relay.name) > published_up_to
        records = await read_topic(own_broker.url, TOPIC, {("g", 1), ("g", 2)}, within=30)
        assert [r.version for r in records if r.key == "g"] == [1, 2]
    finally:
        await producer.stop()


async def _eventually_published(relay: Relay) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            if await relay.run_once() > 0:
                return
        except PublishFailed:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
