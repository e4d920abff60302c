"""What a log looks like after a life of faults: retry duplicates, written straight to Kafka.

A relay that crashes (or loses an acknowledgement) between publishing a batch and moving its
checkpoint publishes the batch again: the log holds the same records twice. A relay that
republishes after the broker lost its log does not repeat them, so the new log is shorter than
the old one and every offset after the first duplicate moves (issue 9, §2.1).
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from events.kafka.adapter import make_producer

__all__ = ["publish_retry_duplicates"]


async def publish_retry_duplicates(bootstrap: str, topic: str, *, within: float = 3.0) -> dict[int, int]:
    """Publish again every record the topic holds (read for at most ``within`` s, until a read
    comes back empty), as a relay retry would. Returns partition -> offset after the last copy."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=25,
    )
    copies: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]] = []
    try:
        await consumer.start()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=300)
            if not fetched and copies:
                break
            for tp, records in fetched.items():
                copies += [(r.key, r.value, list(r.headers), tp.partition) for r in records]
    finally:
        await consumer.stop()
    producer = make_producer(bootstrap, client_id="fault-retry-duplicates")
    ends: dict[int, int] = {}
    try:
        await producer.start()
        for key, value, headers, partition in copies:
            meta = await producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends
