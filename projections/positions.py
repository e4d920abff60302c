"""Where the projector stands in each partition: checkpoints, log epochs, seeks, rebalances.

- On assignment each partition is sought to the checkpoint stored in Redis (written atomically
  with the projection), or to the beginning when Redis has none: a wiped Redis rebuilds itself.
  A checkpoint past the end of the log (a shorter, republished log) is read from the last record.
- Every checkpoint belongs to a log epoch (the relay's reset counter, header ``fs_log_epoch``): a
  record of a newer epoch resets the checkpoint to the beginning of the new log, a record of an
  older one is dropped (issue 9, §2.1; docs/read-side.md).
- The group listener runs in aiokafka's coordinator task, beside a batch: both take :attr:`_lock`
  (issue 9, §2.3); only assigned partitions are ever sought.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from events.kafka.records import log_epoch_of
from projections.deadletters import ProjectorDeadLetters
from projections.errors import ReadModelUnavailable
from projections.readmodel import Checkpoint, RedisReadModel

__all__ = ["PartitionPositions", "SeekOnAssignment"]

_log = structlog.get_logger("projections.projector")


class SeekOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs in aiokafka's coordinator task, beside the projector's ``process_batch``: both take the
    projector's lock, so a rebalance never lands in the middle of a batch (issue 9, §2.3)."""

    def __init__(self, projector: PartitionPositions) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._projector._lock:
            self._projector._generation += 1
            for tp in revoked:
                self._projector._floors.pop(tp, None)
                self._projector._epochs.pop(tp, None)
                self._projector._pending_seek.discard(tp)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self._projector._lock:
            self._projector._generation += 1
            await self._projector._seek_to_checkpoints(list(assigned))


class PartitionPositions:
    """The per-partition state of a projector; the base of :class:`projections.projector.Projector`."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        read_model: RedisReadModel,
        *,
        group: str,
        topic: str,
        dead_letters: ProjectorDeadLetters | None,
    ) -> None:
        self._consumer = consumer
        self.read_model = read_model
        self.group = group
        self.topic = topic
        self._dead_letters = dead_letters
        self._floors: dict[TopicPartition, int] = {}
        self._epochs: dict[TopicPartition, int] = {}  # the log epoch of each partition's checkpoint
        self._pending_seek: set[TopicPartition] = set()
        self._lock = asyncio.Lock()  # a batch, or a rebalance callback: never both at once
        self._generation = 0  # bumped by every rebalance callback: records fetched before are stale

    def _checkpoint(self, tp: TopicPartition, offset: int, floor: int | None) -> Checkpoint:
        return Checkpoint(self.group, tp.topic, tp.partition, offset, floor, self._epochs.get(tp, 0))

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        """Seek only a partition still assigned (a revoked one raises ``IllegalStateError``)."""
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, offset)

    async def _seek_to_checkpoints(self, partitions: list[TopicPartition]) -> None:
        """Seek each assigned partition to its Redis checkpoint (the beginning when there is none or
        it is 0), remembering the checkpoint's log epoch. Called with the lock held (a rebalance
        callback, or a batch): no batch applies records meanwhile, so no floor written by a batch
        can overwrite the one set here, and no stale record is applied after the seek."""
        assigned = self._consumer.assignment()
        mine = [tp for tp in partitions if tp.topic == self.topic and tp in assigned]
        try:
            stored = {tp: await self.read_model.position(self.group, tp.topic, tp.partition) for tp in mine}
            fresh = [tp for tp, (offset, _) in stored.items() if not offset]
            if fresh:  # one offsets request for all of them (one per partition costs ~0.5 s each)
                await self._consumer.seek_to_beginning(*fresh)
            for tp, (offset, epoch) in stored.items():
                if offset:
                    self._consumer.seek(tp, offset)
                self._floors[tp] = offset or 0
                self._epochs[tp] = epoch
                self._pending_seek.discard(tp)
                _log.info(
                    "projector.seek", topic=tp.topic, partition=tp.partition, offset=offset, epoch=epoch
                )
            await self._check_past_end({tp: offset for tp, (offset, _) in stored.items() if offset})
        except ReadModelUnavailable as e:
            _log.warning("projector.seek_deferred", error=str(e))
            self._pending_seek.update(mine)
            self._consumer.pause(*mine)

    async def _check_past_end(self, offsets: dict[TopicPartition, int]) -> None:
        """A checkpoint past the end of the log: the log may be shorter than the one the checkpoint
        was taken on (lost and republished). Apache Kafka answers such a fetch with OffsetOutOfRange
        (the consumer starts again from the beginning), tansu with nothing at all, for ever. So the
        partition is read from its last record: a record of a newer epoch resets the checkpoint
        (:meth:`_enter_epochs`); one of the same epoch is a duplicate (tansu under-reports the end
        after a batch of several records: then a few records are read twice)."""
        if not offsets:
            return
        try:
            ends = await self._consumer.end_offsets(list(offsets))
        except KafkaError as e:
            _log.warning("projector.end_offsets_unknown", error=str(e))
            return
        for tp, offset in offsets.items():
            end = ends.get(tp, offset)
            if end < offset:
                _log.warning(
                    "projector.checkpoint_past_end",
                    topic=tp.topic,
                    partition=tp.partition,
                    checkpoint=offset,
                    end=end,
                )
                self._consumer.seek(tp, max(end - 1, 0))

    async def _resolve_pending_seeks(self) -> None:
        if not self._pending_seek:
            return
        pending = [tp for tp in self._pending_seek if tp in self._consumer.assignment()]
        self._pending_seek = set(pending)
        await self._seek_to_checkpoints(pending)
        if self._pending_seek:
            raise ReadModelUnavailable("cannot read checkpoints from redis")
        self._consumer.resume(*pending)

    async def _enter_epochs(
        self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Screen records by log epoch (issue 9, §2.1). A record of an older epoch than the partition's
        checkpoint was published to the new log before the relay noticed the loss: it is dropped (the
        relay republishes everything in the new epoch). A record of a newer epoch means the log was
        lost and republished: the checkpoint goes back to 0 in that epoch and the partition is read
        again from its beginning (version de-duplication absorbs the replay)."""
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for tp, records in fetched.items():
            current = self._epochs.get(tp, 0)
            newest = max(log_epoch_of(record.headers) for record in records) if records else current
            if newest > current:
                await self._reset_to_epoch(tp, newest)
                continue
            batches[tp] = [r for r in records if log_epoch_of(r.headers) == current]
            if len(batches[tp]) < len(records):  # expected only right after a loss: say so
                _log.warning(
                    "projector.older_epoch_dropped",
                    topic=tp.topic,
                    partition=tp.partition,
                    epoch=current,
                    records=len(records) - len(batches[tp]),
                )
        return batches

    async def _reset_to_epoch(self, tp: TopicPartition, epoch: int) -> None:
        stored = await self.read_model.reset_epoch(self.group, tp.topic, tp.partition, epoch)
        _log.warning(
            "projector.log_epoch_changed", topic=tp.topic, partition=tp.partition, epoch=epoch, stored=stored
        )
        await self._seek_to_checkpoints([tp])
