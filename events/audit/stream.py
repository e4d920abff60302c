"""Batched reading of the audit log (the Kafka topic), partition by partition, memory flat.

``read_batches`` assigns partitions by hand (no consumer group, nothing committed), seeks each to
the beginning, to an instant (``offsets_for_times``) or to an explicit offset, and yields lists
of :class:`LogRecord` until every partition is *caught up*.

Caught up, robustly: tansu reports a wrong high watermark after a batch of several records (the
last batch's base offset + 1), so the reported end offset is never trusted alone. A partition is
done when its position is at or past the reported end **and** a poll of all remaining partitions
returned nothing for ``idle_ms`` (a short, bounded idle period) — or when it reached an explicit
``stop_offsets`` entry. Records produced while reading are read too, until the log goes idle.

Start from an instant: ``offsets_for_times(t)`` gives the first offset whose record timestamp is
>= t. Records carry the producer's CreateTime (the relay publishes after the event occurred, so
timestamp >= occurred_at); every record before that offset therefore has occurred_at < t, and
skipping it is correct. The reverse (stopping at an instant) is **not** correct in general: an
event that occurred before t may be published after t (relay backlog while Kafka was down).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from core.envelope import Event
from core.errors import FlagstreamError
from events.audit.timeindex import find_offsets

__all__ = [
    "AuditLogUnavailable",
    "LogRecord",
    "StreamSettings",
    "offsets_after",
    "partition_for_key",
    "read_batches",
    "read_events",
    "read_values",
    "topic_partitions",
]

log = structlog.get_logger(__name__)

_MAX_STALLED_ROUNDS = 10
_T = TypeVar("_T")
# (fetched records, stop offsets, partitions still to read) -> the batch to yield
_Collect = Callable[[Mapping[TopicPartition, list[Any]], Mapping[int, int], set[TopicPartition]], list[_T]]



class AuditLogUnavailable(FlagstreamError):
    """The Kafka topic could not be read (broker down, topic missing)."""

    code = "audit_log_unavailable"
    http_status = 503
    retriable = True


@dataclass(frozen=True, slots=True)
class StreamSettings:
    bootstrap_servers: str
    topic: str = "flagstream.flag-events"
    batch_size: int = 10_000
    idle_ms: int = 1_000
    poll_ms: int = 200
    fetch_max_bytes: int = 64 * 1024 * 1024
    max_partition_fetch_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of the log with its Kafka coordinates; the value is kept raw (parse on demand)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes

    def event(self) -> Event:
        return Event.from_json(self.value)


def partition_for_key(key: str, partitions: Collection[int]) -> int:
    """The partition the default (murmur2) partitioner sends a stream key to."""
    ordered = sorted(partitions)
    return int(DefaultPartitioner()(key.encode("utf-8"), ordered, ordered))


def _make_consumer(settings: StreamSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=settings.fetch_max_bytes,
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
    )


async def topic_partitions(settings: StreamSettings) -> list[int]:
    """The partition numbers of the topic (empty when the topic does not exist)."""
    consumer = _make_consumer(settings)
    try:
        await consumer.start()
        await consumer.topics()
        return sorted(consumer.partitions_for_topic(settings.topic) or ())
    except KafkaError as e:
        raise AuditLogUnavailable(f"cannot read topic {settings.topic!r}") from e
    finally:
        await consumer.stop()


async def offsets_after(settings: StreamSettings, instant: datetime) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is later than ``instant`` (ms).

    Partitions with no such record, or whose answer the log does not confirm, are left out
    (read them to the end).
    """
    consumer = _make_consumer(settings)
    try:
        await consumer.start()
        await consumer.topics()
        tps = [TopicPartition(settings.topic, p) for p in consumer.partitions_for_topic(settings.topic) or ()]
        consumer.assign(tps)
        found = await find_offsets(consumer, tps, int(instant.timestamp() * 1000) + 1)
        return {tp.partition: offset for tp, offset in found.items()}
    except KafkaError as e:
        raise AuditLogUnavailable(f"cannot read topic {settings.topic!r}") from e
    finally:
        await consumer.stop()


async def read_batches(
    settings: StreamSettings,
    *,
    since: datetime | None = None,
    partitions: Collection[int] | None = None,
    start_offsets: Mapping[int, int] | None = None,
    stop_offsets: Mapping[int, int] | None = None,
) -> AsyncIterator[list[LogRecord]]:
    """Yield batches of records from every (or the given) partition until caught up.

    ``since`` starts each partition at ``offsets_for_times(since)``; ``start_offsets`` (partition ->
    offset) overrides it; ``stop_offsets`` (partition -> offset, exclusive) ends a partition early.
    """
    async for batch in _read(settings, since, partitions, start_offsets, stop_offsets, _collect):
        yield batch


async def read_values(
    settings: StreamSettings,
    *,
    partitions: Collection[int] | None = None,
    stop_offsets: Mapping[int, int] | None = None,
) -> AsyncIterator[list[bytes]]:
    """:func:`read_batches` reduced to the records' values (no :class:`LogRecord` built per record:
    a full scan that needs only the bodies, such as the as-of of an environment, saves ~1.5 us each)."""
    async for batch in _read(settings, None, partitions, None, stop_offsets, _collect_values):
        yield batch


async def _read(
    settings: StreamSettings,
    since: datetime | None,
    partitions: Collection[int] | None,
    start_offsets: Mapping[int, int] | None,
    stop_offsets: Mapping[int, int] | None,
    collect: _Collect[_T],
) -> AsyncIterator[list[_T]]:
    consumer = _make_consumer(settings)
    try:
        await consumer.start()
        await consumer.topics()
        known = sorted(consumer.partitions_for_topic(settings.topic) or ())
        chosen = [p for p in known if partitions is None or p in partitions]
        if not chosen:
            return
        tps = [TopicPartition(settings.topic, p) for p in chosen]
        consumer.assign(tps)
        await _seek_starts(consumer, tps, since, start_offsets or {})
        async for batch in _poll_until_caught_up(consumer, settings, tps, stop_offsets or {}, collect):
            yield batch
    except KafkaError as e:
        raise AuditLogUnavailable(f"cannot read topic {settings.topic!r}") from e
    finally:
        await consumer.stop()


async def read_events(
    settings: StreamSettings, *, since: datetime | None = None, partitions: Collection[int] | None = None
) -> AsyncIterator[tuple[LogRecord, Event]]:
    """Every record parsed into an :class:`Event`, in per-partition order."""
    async for batch in read_batches(settings, since=since, partitions=partitions):
        for record in batch:
            yield record, record.event()


async def _seek_starts(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    since: datetime | None,
    start_offsets: Mapping[int, int],
) -> None:
    found = {} if since is None else await find_offsets(consumer, tps, int(since.timestamp() * 1000))
    await consumer.seek_to_beginning(*tps)
    for tp in tps:
        if tp.partition in start_offsets:
            consumer.seek(tp, start_offsets[tp.partition])
        elif tp in found:
            consumer.seek(tp, found[tp])


async def _poll_until_caught_up(
    consumer: AIOKafkaConsumer,
    settings: StreamSettings,
    tps: list[TopicPartition],
    stop_offsets: Mapping[int, int],
    collect: _Collect[_T],
) -> AsyncIterator[list[_T]]:
    remaining = set(tps)
    for tp in tps:
        if tp.partition in stop_offsets and await consumer.position(tp) >= stop_offsets[tp.partition]:
            remaining.discard(tp)
    idle_since = time.monotonic()
    stalled_rounds = 0
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=settings.poll_ms,
                                         max_records=settings.batch_size)
        batch = collect(fetched, stop_offsets, remaining)
        if batch:
            idle_since = time.monotonic()
            stalled_rounds = 0
            yield batch
            continue
        if (time.monotonic() - idle_since) * 1000 < settings.idle_ms:
            continue
        await _drop_caught_up(consumer, remaining)
        if remaining:
            stalled_rounds += 1
            if stalled_rounds > _MAX_STALLED_ROUNDS:
                raise AuditLogUnavailable("partitions stay behind their end offset: "
                                          f"{sorted(tp.partition for tp in remaining)}")
            log.info("audit.stream.waiting", partitions=sorted(tp.partition for tp in remaining))
            idle_since = time.monotonic()


def _collect(fetched: Mapping[TopicPartition, list[Any]], stop_offsets: Mapping[int, int],
             remaining: set[TopicPartition]) -> list[LogRecord]:
    batch: list[LogRecord] = []
    for tp, records in fetched.items():
        stop = stop_offsets.get(tp.partition)
        for r in records:
            if stop is not None and r.offset >= stop:
                break
            batch.append(LogRecord(tp.partition, r.offset, r.timestamp, r.key, r.value))
        if stop is not None and records and records[-1].offset + 1 >= stop:
            remaining.discard(tp)
    return batch


def _collect_values(fetched: Mapping[TopicPartition, list[Any]], stop_offsets: Mapping[int, int],
                    remaining: set[TopicPartition]) -> list[bytes]:
    batch: list[bytes] = []
    for tp, records in fetched.items():
        stop = stop_offsets.get(tp.partition)
        if stop is None:
            batch.extend([r.value for r in records])
            continue
        batch.extend([r.value for r in records if r.offset < stop])
        if records and records[-1].offset + 1 >= stop:
            remaining.discard(tp)
    return batch


async def _drop_caught_up(consumer: AIOKafkaConsumer, remaining: set[TopicPartition]) -> None:
    """After an idle period: a partition whose position reached the reported end is done."""
    ends = await consumer.end_offsets(list(remaining))
    for tp in list(remaining):
        if await consumer.position(tp) >= ends[tp]:
            remaining.discard(tp)
