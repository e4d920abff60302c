"""Reading the log: caught up despite tansu's high watermark; time lookups confirmed or left out."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from events.audit.stream import StreamSettings, read_batches, read_values
from events.audit.timeindex import find_offsets
from tests.integration.audit.support import create_topic

pytestmark = pytest.mark.integration

_BASE_MS = 1_767_225_600_000


async def _produce_batched(bootstrap: str, topic: str, count: int) -> None:
    """Records sent without waiting, so they travel in multi-record batches; timestamps 1 s apart."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=20
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"v{i}".encode(), key=b"k", timestamp_ms=_BASE_MS + i * 1000)
            for i in range(count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_read_batches__multi_record_batches__every_record_read_once(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await _produce_batched(kafka_bootstrap, unique_topic, 500)

    offsets = [
        r.offset
        async for batch in read_batches(StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300))
        for r in batch
    ]

    assert offsets == list(range(500))


async def test_read_values__stop_offset__values_in_order_up_to_it(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await _produce_batched(kafka_bootstrap, unique_topic, 300)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)

    everything = [v async for batch in read_values(settings) for v in batch]
    stopped = [v async for batch in read_values(settings, stop_offsets={0: 120}) for v in batch]

    assert everything == [f"v{i}".encode() for i in range(300)]
    assert stopped == everything[:120]


async def test_find_offsets__any_target__confirmed_answer_is_right_or_absent(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await _produce_batched(kafka_bootstrap, unique_topic, 20)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(unique_topic, 0)
    consumer.assign([tp])
    try:
        for target in (
            _BASE_MS - 5000,
            _BASE_MS + 500,
            _BASE_MS + 7000,
            _BASE_MS + 19_000,
            _BASE_MS + 60_000,
        ):
            found = await find_offsets(consumer, [tp], target)
            expected = next((i for i in range(20) if _BASE_MS + i * 1000 >= target), None)
            assert found.get(tp) in (expected, None) if expected is not None else tp not in found
    finally:
        await consumer.stop()
