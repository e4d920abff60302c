"""Test helpers: create a topic on the broker and publish events the way the relay does."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.envelope import Event

__all__ = ["create_topic", "publish"]


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def publish(bootstrap: str, topic: str, events: Iterable[Event | bytes], key: bytes = b"x") -> None:
    """Send events (or raw values) in order; an event's key is its stream key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for item in events:
            if isinstance(item, Event):
                headers = [("ce_type", item.type.encode()), ("fs_version", str(item.version).encode())]
                await producer.send_and_wait(
                    topic, item.to_json().encode(), key=item.flag_key.encode(), headers=headers
                )
            else:
                await producer.send_and_wait(topic, item, key=key)
    finally:
        await producer.stop()
