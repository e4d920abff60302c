"""The projector working through a backlog: batched round trips, same read model as a replay.

It also prints the rate (events/s) it reached, the figure to compare when the apply path changes:
``python -m pytest -q -s tests/integration/projections/test_throughput_projector.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from core.state import FlagState
from projections.connection import make_redis
from projections.projector import Projector
from projections.readmodel import RedisReadModel
from tests.integration.projections.kafka_helpers import create_topic
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration

_FLAGS, _CHANGES = 60, 40  # 2,460 events


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


def _backlog() -> list[Event]:
    writer = StreamWriter()
    events = [writer.create(flag_doc(f"flag-{i}", "production", "staging")) for i in range(_FLAGS)]
    for round_ in range(_CHANGES):
        for i in range(_FLAGS):
            events.append(writer.configure(f"flag-{i}", "production", on_config(round_ % 2 == 0)))
    return events


async def _publish_all(bootstrap: str, topic: str, events: list[Event]) -> None:
    """All in flight at once (per-key order holds: aiokafka keeps one request in flight per partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, event.to_json().encode(), key=event.flag_key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_projector__backlog_of_thousands_of_events__read_model_equals_replay(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    events = _backlog()
    expected = {k: replay([e for e in events if e.flag_key == k]) for k in {e.flag_key for e in events}}
    await create_topic(kafka_bootstrap, unique_topic, partitions=6)
    await _publish_all(kafka_bootstrap, unique_topic, events)
    model = RedisReadModel(client)
    projector = Projector(
        model, bootstrap_servers=kafka_bootstrap, topic=unique_topic, group=f"g-{unique_topic}"
    )
    joined = time.perf_counter()
    await projector.start()
    try:
        deadline = time.monotonic() + 30
        while projector.applied == 0 and time.monotonic() < deadline:  # joined, sought, first records in
            await projector.process_batch(0.5)
        started, batches, first = time.perf_counter(), 0, projector.applied
        joined = started - joined
        while projector.applied < len(events) and time.perf_counter() - started < 60:
            batches += 1
            await projector.process_batch(0.5)
        elapsed = time.perf_counter() - started
    finally:
        await projector.stop()

    states: dict[str, FlagState] = {k: await model.load_flag_state(k) for k in expected}
    assert states == expected
    assert projector.applied == len(events)
    rate = (len(events) - first) / max(elapsed, 1e-9)
    print(f"\nprojector backlog: start to first batch done {joined:.2f} s ({first} events)")
    print(f"projector backlog: then {len(events) - first} events in {elapsed:.2f} s over {batches} batches")
    print(f"projector backlog rate: {rate:,.0f} events/s")
