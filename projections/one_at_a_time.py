"""Applying records one at a time: the projector's slow path, and the one every decision goes through.

A record that is not plain (a stream that is not projected, an unparseable record, an event of a
blocked flag) or that did not go as planned in a batched run is applied here:

- streams that are not projected (``incident:``, ``ops:``, ``alert:``) are skipped; the
  checkpoint moves past them;
- a record that cannot be parsed, is refused by the core, follows a version gap or does not chain
  (its prev_hash is not the stored hash) raises :class:`PoisonEvent` from :meth:`OneAtATime._reject`;
  with ``dead_letters`` (:class:`projections.deadletters.ProjectorDeadLetters`) it is parked and its
  flag blocked, later events of a blocked flag are held (parked as waiting), and the checkpoint
  moves past both (docs/failure-handling.md). Without it, the poison record stops the projector;
- Redis answering "behind" (it lost data) or "epoch" (another log epoch) rewinds the partition
  to the stored checkpoint;
- Redis unreachable: the partition is sought back to the failed record and
  :class:`ReadModelUnavailable` is raised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from core.envelope import Event
from core.errors import EventOutOfOrder
from monitoring import metrics
from projections.deadletters import is_projected_stream
from projections.errors import ApplyRejected, PoisonEvent, ReadModelUnavailable
from projections.positions import PartitionPositions
from projections.readmodel import ApplyOutcome, Checkpoint
from projections.resilience import advance_checkpoint

__all__ = ["OneAtATime", "parse_record"]

_log = structlog.get_logger("projections.projector")


class OneAtATime(PartitionPositions):
    """Applies single records (see the module docstring)."""

    applied = 0

    async def _apply_one(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any], event: Event | Exception
    ) -> bool:
        """Apply one record; ``False`` when Redis turned out behind (the partition was rewound)."""
        checkpoint = self._checkpoint(tp, record.offset, self._floors.get(tp))
        try:
            outcome = await self._project(tp, record, event, checkpoint)
        except ReadModelUnavailable:
            self._seek(tp, record.offset)
            raise
        except PoisonEvent as poison:
            outcome = await self._park(tp, record, event, checkpoint, poison)
        if outcome in (ApplyOutcome.BEHIND, ApplyOutcome.EPOCH):  # Redis lost data, or another epoch
            _log.warning(
                "projector.read_model_behind",
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                outcome=outcome.value,
            )
            await self._seek_to_checkpoints([tp])
            return False
        self._floors[tp] = record.offset + 1
        return True

    async def _project(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        event: Event | Exception,
        checkpoint: Checkpoint,
    ) -> ApplyOutcome:
        """Skip a stream that is not projected, hold an event of a blocked flag, or apply.

        Raises :class:`PoisonEvent` (via :meth:`_reject`) or :class:`ReadModelUnavailable`.
        """
        key = _key_of(record)
        if not is_projected_stream(event.flag_key if isinstance(event, Event) else key or ""):
            return await self._pass_over(tp, checkpoint, "skipped")
        if not isinstance(event, Event):
            self._reject(record, "unparseable", str(event), None, event)
        if self._dead_letters is not None:
            held = await self._dead_letters.screen(event, checkpoint)
            if held is not None:
                return await self._pass_over(tp, checkpoint, "held", held)
        try:
            result = await self.read_model.apply(event, checkpoint)
        except ApplyRejected as e:
            self._reject(record, "rejected", str(e), event, e)
        if result.outcome is ApplyOutcome.GAP:
            self._reject(record, "gap", f"stored version {result.stored_version}", event, None)
        if result.outcome is ApplyOutcome.CHAIN:
            why = f"prev_hash does not chain to the stored v{result.stored_version}"
            self._reject(record, "chain", why, event, EventOutOfOrder(why))
        if result.outcome not in (ApplyOutcome.BEHIND, ApplyOutcome.EPOCH):
            self._observe(event, result.outcome.value, result.environments, tp, record.offset + 1)
        return result.outcome

    async def _park(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        event: Event | Exception,
        checkpoint: Checkpoint,
        poison: PoisonEvent,
    ) -> ApplyOutcome:
        """The dead-letter hook: park the poison record and move past it (without a dead-letter
        queue: seek back to it and raise)."""
        if self._dead_letters is None:
            self._seek(tp, record.offset)
            raise poison
        try:
            outcome = await self._dead_letters.park(
                poison, event if isinstance(event, Event) else None, checkpoint, record_key=_key_of(record)
            )
        except ReadModelUnavailable:
            self._seek(tp, record.offset)
            raise
        metrics.record_events_projected("-", "parked")
        metrics.set_projector_offset(tp.topic, tp.partition, record.offset + 1)
        return outcome

    async def _pass_over(
        self, tp: TopicPartition, checkpoint: Checkpoint, label: str, moved: ApplyOutcome | None = None
    ) -> ApplyOutcome:
        """Count a record that changes no stream, moving the checkpoint past it unless ``moved``."""
        outcome = moved or await advance_checkpoint(self.read_model, checkpoint)
        metrics.record_events_projected("-", label)
        metrics.set_projector_offset(tp.topic, tp.partition, checkpoint.offset + 1)
        return outcome

    def _reject(
        self,
        record: ConsumerRecord[Any, Any],
        kind: str,
        message: str,
        event: Event | None,
        cause: BaseException | None,
    ) -> NoReturn:
        """The one place a record is declared poison (issue 4's dead-letter queue hooks in here)."""
        _log.error(
            "projector.poison_event",
            kind=kind,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            stream=event.flag_key if event else None,
            version=event.version if event else None,
            error=message,
        )
        raw = record.value if isinstance(record.value, bytes) else None
        error = PoisonEvent(
            f"{kind} record at {record.topic}[{record.partition}]@{record.offset}: {message}",
            kind=kind,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            stream_key=event.flag_key if event else None,
            version=event.version if event else None,
            raw=raw,
        )
        if cause is not None:
            raise error from cause
        raise error

    def _observe(
        self, event: Event, outcome: str, envs: tuple[str, ...], tp: TopicPartition, nxt: int
    ) -> None:
        if outcome == ApplyOutcome.APPLIED:
            self.applied += 1
        lag = (datetime.now(UTC) - event.occurred_at).total_seconds()
        for env in envs or ("-",):
            metrics.record_events_projected(env, outcome)
            if outcome == ApplyOutcome.APPLIED and env != "-":
                metrics.set_projection_lag(env, lag)
        metrics.set_projector_offset(tp.topic, tp.partition, nxt)


def _key_of(record: ConsumerRecord[Any, Any]) -> str | None:
    key = record.key
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return key if isinstance(key, str) else None


def parse_record(record: ConsumerRecord[Any, Any]) -> Event | Exception:
    try:
        return Event.from_json(record.value)
    except (ValidationError, ValueError, TypeError) as e:
        return e
