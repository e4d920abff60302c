"""Noticing a broker that lost its log (tansu keeps everything in memory; a disk can be wiped).

The relay records, per topic and partition, the highest offset Kafka acknowledged and the event
stored there (table ``relay_acks``, migration 0020). The log is taken as lost when

- an acknowledgement comes back at or below that offset (a healthy log only grows), or
- a probe finds the topic missing, the partition empty, or another event at that offset.

Probes run when the relay starts, after a failed publish round is followed by a good one, when
the breaker closes, and every ``probe_interval`` seconds. Recovery: recreate the topics, forget
the recorded offsets and move to the next *log epoch* (table ``relay_log_epochs``, in the same
transaction); the relay then resets its checkpoint and republishes from the beginning. Every record
carries the epoch (header ``fs_log_epoch``): the republished log holds no retry duplicates and no
purged or parked events, so its offsets differ from the old log's, and a projector that sees a newer
epoch starts over from the beginning of the partition instead of trusting its old checkpoint.

Limits: a broker that lost only the *end* of a partition (below our last acknowledged offset but
not all of it) is noticed only when the lost part includes that last offset; a loss that leaves
the last record but drops older ones is not noticed at all. A probe that sees nothing within its
time bound on a partition whose end offset is not 0 reports "unknown" and decides nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from events.errors import PublishFailed, StoreUnavailable
from events.kafka.adapter import TopicSpec, ensure_topics
from events.ports import PublishedRecord
from events.store.db import CONNECTION_ERRORS

__all__ = ["AckMark", "LogGuard", "StampsLogEpoch", "probe_partitions"]

log = structlog.get_logger(__name__)

_RECORD = """
INSERT INTO relay_acks AS a (relay, topic, partition, last_offset, event_id) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (relay, topic, partition) DO UPDATE
   SET last_offset = EXCLUDED.last_offset, event_id = EXCLUDED.event_id, updated_at = now()
 WHERE a.last_offset < EXCLUDED.last_offset"""


_NEXT_EPOCH = """
INSERT INTO relay_log_epochs AS e (relay, epoch) VALUES ($1, 1)
ON CONFLICT (relay) DO UPDATE SET epoch = e.epoch + 1, updated_at = now()
RETURNING epoch"""


@runtime_checkable
class StampsLogEpoch(Protocol):
    """A publisher that stamps the log epoch on what it publishes (``KafkaPublisher``)."""

    log_epoch: int


@dataclass(frozen=True, slots=True)
class AckMark:
    offset: int
    event_id: UUID


class LogGuard:
    """The relay's record of what Kafka acknowledged, and the checks against it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: str,
        *,
        bootstrap: str,
        topics: Sequence[TopicSpec],
        probe_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._relay = relay
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._probe_timeout = probe_timeout
        self.marks: dict[tuple[str, int], AckMark] = {}
        self.epoch = 0

    async def load(self) -> None:
        rows = await self._fetch(
            "SELECT topic, partition, last_offset, event_id FROM relay_acks WHERE relay = $1", self._relay
        )
        self.marks = {(r["topic"], r["partition"]): AckMark(r["last_offset"], r["event_id"]) for r in rows}
        epochs = await self._fetch("SELECT epoch FROM relay_log_epochs WHERE relay = $1", self._relay)
        self.epoch = int(epochs[0]["epoch"]) if epochs else 0

    def regressed(self, records: Iterable[PublishedRecord]) -> list[tuple[str, int]]:
        """Partitions where an acknowledgement came back at or below the recorded highest offset."""
        lost = set()
        for record in records:
            mark = self.marks.get((record.topic, record.partition))
            if mark is not None and record.offset <= mark.offset:
                lost.add((record.topic, record.partition))
        return sorted(lost)

    async def record(self, records: Iterable[PublishedRecord]) -> None:
        highest: dict[tuple[str, int], PublishedRecord] = {}
        for record in records:
            key = (record.topic, record.partition)
            if key not in highest or record.offset > highest[key].offset:
                highest[key] = record
        changed = [r for k, r in highest.items() if k not in self.marks or r.offset > self.marks[k].offset]
        if not changed:
            return
        try:
            await self._pool.executemany(
                _RECORD, [(self._relay, r.topic, r.partition, r.offset, r.event_id) for r in changed]
            )
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"acknowledged offsets not saved, Postgres unreachable: {e}") from e
        for r in changed:
            self.marks[(r.topic, r.partition)] = AckMark(r.offset, r.event_id)

    async def probe(self) -> list[tuple[str, int]]:
        """Partitions whose last acknowledged record is gone (see the module docstring)."""
        if not self.marks:
            return []
        return await probe_partitions(self._bootstrap, self.marks, within=self._probe_timeout)

    async def recover(self) -> None:
        """Recreate the topics, forget what was acknowledged and enter the next log epoch: everything
        will be published again, stamped with the new epoch."""
        await ensure_topics(self._bootstrap, self._topics, recreate_mismatched=True)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM relay_acks WHERE relay = $1", self._relay)
                epoch = await conn.fetchval(_NEXT_EPOCH, self._relay)
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"acknowledged offsets not reset, Postgres unreachable: {e}") from e
        self.marks = {}
        self.epoch = int(epoch)
        log.warning("relay.log_epoch", relay=self._relay, epoch=self.epoch)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(query, *args))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e


async def probe_partitions(
    bootstrap: str, marks: Mapping[tuple[str, int], AckMark], *, within: float = 5.0
) -> list[tuple[str, int]]:
    """Read back the record at each mark; return the partitions that positively lost it.
    Kafka unreachable: :class:`PublishFailed` (nothing can be decided)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        request_timeout_ms=int(within * 1000) + 1000, client_id="flagstream-log-probe",
    )
    try:
        await asyncio.wait_for(consumer.start(), within)
        lost = [key for key in marks if await _topic_missing(consumer, key[0])]
        present = {key: mark for key, mark in marks.items() if key not in lost}
        if present:
            lost += await _probe_present(consumer, present, within)
    except (KafkaError, TimeoutError, OSError) as e:
        raise PublishFailed(f"log probe failed: {e!r}") from e
    finally:
        await consumer.stop()
    if lost:
        log.error("relay.log_lost", partitions=[f"{t}:{p}" for t, p in sorted(lost)])
    return sorted(lost)


async def _topic_missing(consumer: AIOKafkaConsumer, topic: str) -> bool:
    topics = await consumer.topics()  # refreshes the metadata
    return topic not in topics


async def _probe_present(
    consumer: AIOKafkaConsumer, marks: Mapping[tuple[str, int], AckMark], within: float
) -> list[tuple[str, int]]:
    partitions = {TopicPartition(topic, partition): mark for (topic, partition), mark in marks.items()}
    consumer.assign(list(partitions))
    ends = await consumer.end_offsets(list(partitions))
    lost: list[tuple[str, int]] = []
    pending = {}
    for tp, mark in partitions.items():
        if ends.get(tp, 0) == 0:
            lost.append((tp.topic, tp.partition))  # an empty partition that once held our records
        else:
            consumer.seek(tp, mark.offset)
            pending[tp] = mark
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending and loop.time() < deadline:
        fetched = await consumer.getmany(*pending, timeout_ms=200, max_records=1)
        for tp, records in fetched.items():
            if not records or tp not in pending:
                continue
            mark, first = pending.pop(tp), records[0]
            ids = [v for k, v in first.headers if k == "ce_id"]
            if first.offset != mark.offset or not ids or ids[0].decode() != str(mark.event_id):
                lost.append((tp.topic, tp.partition))
    for tp in pending:
        log.warning("relay.log_probe_inconclusive", topic=tp.topic, partition=tp.partition)
    return lost
