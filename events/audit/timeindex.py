"""``offsets_for_times``, checked: only offsets the log itself confirms are trusted.

Kafka promises the first offset whose record timestamp is >= the target. tansu (the local
broker) answers ``offsets_for_times`` unreliably — offset 0 for instants past the last record,
for instance — so every hit is checked against the records around it: the record AT the offset
must have a timestamp >= the target, and the record just before it a timestamp < the target.
A hit that fails, or no hit, is left out: callers then read from the beginning (a start bound)
or to the end (a stop bound), which is slower but never wrong.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["find_offsets"]

_PROBE_MS = 2_000


async def find_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timestamp_ms: int
                       ) -> dict[TopicPartition, int]:
    """Per partition, the first offset with a record timestamp >= ``timestamp_ms``, when confirmed.

    Moves the consumer's positions: callers seek afterwards.
    """
    found = await consumer.offsets_for_times(dict.fromkeys(tps, timestamp_ms))
    confirmed: dict[TopicPartition, int] = {}
    for tp in tps:
        hit = found.get(tp)
        if hit is None:
            continue
        at = await _timestamp_at(consumer, tp, hit.offset)
        before = await _timestamp_at(consumer, tp, hit.offset - 1) if hit.offset > 0 else None
        if at is not None and at >= timestamp_ms and (before is None or before < timestamp_ms) \
                and (hit.offset == 0 or before is not None):
            confirmed[tp] = hit.offset
    return confirmed


async def _timestamp_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> int | None:
    consumer.seek(tp, offset)
    fetched = await consumer.getmany(tp, timeout_ms=_PROBE_MS, max_records=1)
    for record in fetched.get(tp, []):
        if record.offset == offset:
            return int(record.timestamp)
    return None
