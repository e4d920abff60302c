"""The Kafka adapter on the real broker: topics created once, records keyed and headed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from core.envelope import Event
from events.kafka.adapter import KafkaPublisher, ensure_topics, flag_events_spec, make_producer
from tests.integration.events.kafka_log import read_topic
from tests.unit.events.factories import make_chain


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    started = make_producer(kafka_bootstrap)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_ensure_topics__called_twice__topic_exists_once(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    spec = flag_events_spec(unique_topic, partitions=3)
    await ensure_topics(kafka_bootstrap, [spec])
    await ensure_topics(kafka_bootstrap, [spec])
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert unique_topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_publish__batch__every_record_keyed_by_flag_with_json_value_and_headers(
    kafka_bootstrap: str, unique_topic: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(kafka_bootstrap, [flag_events_spec(unique_topic, partitions=3)])
    events = make_chain("checkout", 3) + make_chain("search", 2)
    await KafkaPublisher(producer, unique_topic, send_timeout=10).publish(events)

    records = await read_topic(kafka_bootstrap, unique_topic, {(e.flag_key, e.version) for e in events})

    by_id = {str(e.event_id): e for e in events}
    for record in records:
        event = by_id[record.headers["ce_id"].decode()]
        assert record.key == event.flag_key
        assert Event.from_json(record.value) == event
        assert record.headers["ce_subject"] == event.flag_key.encode()
        assert record.headers["ce_type"] == event.type.encode()
    assert [r.version for r in records if r.key == "checkout"] == [1, 2, 3]
    assert len({r.partition for r in records if r.key == "checkout"}) == 1


async def test_publish__acknowledged_offsets__match_the_records_in_the_log(
    kafka_bootstrap: str, unique_topic: str, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(kafka_bootstrap, [flag_events_spec(unique_topic, partitions=2)])
    publisher = KafkaPublisher(producer, unique_topic, send_timeout=10)
    events = make_chain("a", 4) + make_chain("b", 3)
    acked = await publisher.publish(events[:2]) + await publisher.publish(events[2:])

    records = await read_topic(kafka_bootstrap, unique_topic, {(e.flag_key, e.version) for e in events})
    in_log = {r.headers["ce_id"].decode(): (r.partition, r.offset) for r in records}
    assert [str(a.event_id) for a in acked] == [str(e.event_id) for e in events]
    assert {str(a.event_id): (a.partition, a.offset) for a in acked} == in_log


async def test_publish__record_over_the_limit__rejected_before_anything_is_sent(
    kafka_bootstrap: str, unique_topic: str, producer: AIOKafkaProducer
) -> None:
    from events.errors import PublishRejected

    await ensure_topics(kafka_bootstrap, [flag_events_spec(unique_topic, partitions=1)])
    publisher = KafkaPublisher(producer, unique_topic, send_timeout=10, max_record_bytes=300)
    with pytest.raises(PublishRejected) as raised:
        await publisher.publish(make_chain("big", 1))
    assert raised.value.code == "record_too_large"
