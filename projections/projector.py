"""The projector: a consumer group on the flag-events topic, applying records to the read model.

- On assignment each partition is sought to the checkpoint stored in Redis (written atomically
  with the projection), or to the beginning when Redis has none: a wiped Redis rebuilds itself.
- Records are applied in order through the Lua compare-and-set; a duplicate or a replay changes
  nothing. Plain records (events of projected, unblocked streams) go to Redis many at a time:
  every partition's run in one pipeline per batch (:meth:`RedisReadModel.apply_many`); a record
  whose outcome was not the planned one, and every other record, goes one at a time.
- Kafka offsets are committed too, best effort, after Redis has the change (lag
  visibility only: the Redis checkpoint is the truth).
- Every apply carries a checkpoint *floor* (what the projector believes Redis holds); when Redis
  answers "behind" (it lost data) the partition is rewound to Redis's checkpoint.
- A record that cannot be parsed, is refused by the core, or follows a version gap raises
  :class:`PoisonEvent` from :meth:`Projector._reject`; with ``dead_letters``
  (:class:`projections.deadletters.ProjectorDeadLetters`) it is parked and its flag blocked,
  later events of a blocked flag are held (parked as waiting), and the checkpoint moves past both
  (docs/failure-handling.md). Without it, the poison record stops the projector.
- Streams that are not projected (``incident:``, ``ops:``, ``alert:``) are skipped; the
  checkpoint moves past them.
- Redis unreachable: the partition is sought back to the failed record and
  :class:`ReadModelUnavailable` is raised; :meth:`run` pauses and retries, committing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from core.envelope import Event
from core.errors import EventOutOfOrder
from events.errors import StoreUnavailable
from events.kafka.adapter import make_consumer
from events.kafka.records import log_epoch_of
from monitoring import metrics
from projections.deadletters import ProjectorDeadLetters, is_projected_stream
from projections.errors import ApplyRejected, PoisonEvent, ReadModelUnavailable
from projections.readmodel import ApplyOutcome, Checkpoint, RedisReadModel
from projections.resilience import advance_checkpoint

__all__ = ["DEFAULT_GROUP", "Projector"]

DEFAULT_GROUP = "flagstream-projector"
_COMMIT_INTERVAL = 1.0
_log = structlog.get_logger("projections.projector")


class _SeekOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs in aiokafka's coordinator task, beside :meth:`Projector.process_batch`: both take the
    projector's lock, so a rebalance never lands in the middle of a batch (issue 9, §2.3)."""

    def __init__(self, projector: Projector) -> None:
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


class Projector:
    """Projects one topic into one read model. Use :meth:`start` / :meth:`stop` around the loop."""

    def __init__(
        self,
        read_model: RedisReadModel,
        *,
        bootstrap_servers: str,
        topic: str,
        group: str = DEFAULT_GROUP,
        max_records: int = 500,
        client_id: str = "flagstream-projector",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        fetch_max_wait_ms: int = 20,
        dead_letters: ProjectorDeadLetters | None = None,
    ) -> None:
        self.read_model = read_model
        self._dead_letters = dead_letters
        self.topic = topic
        self.group = group
        self._max_records = max_records
        self._consumer = make_consumer(
            bootstrap_servers,
            group_id=group,
            client_id=client_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,  # the broker may hold an empty fetch this long: latency
        )
        self._floors: dict[TopicPartition, int] = {}
        self._epochs: dict[TopicPartition, int] = {}  # the log epoch of each partition's checkpoint
        self._lock = asyncio.Lock()  # a batch, or a rebalance callback: never both at once
        self._generation = 0  # bumped by every rebalance callback: records fetched before are stale
        self._pending_seek: set[TopicPartition] = set()
        self.applied = 0
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_commit = 0.0

    async def start(self) -> None:
        if self._dead_letters is not None:
            await self._dead_letters.start()
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=_SeekOnAssignment(self))

    async def stop(self) -> None:
        await self._flush_commits()
        await self._consumer.stop()

    async def run(self, stop: asyncio.Event, *, poll_timeout: float = 0.5) -> None:
        """Process batches until ``stop`` is set; the batch in hand is finished first."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.process_batch(poll_timeout)
                backoff = 0.1
            except ReadModelUnavailable as e:
                _log.warning("projector.redis_unavailable", error=str(e), retry_in_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    async def run_until(
        self, predicate: Callable[[], Awaitable[bool]], within: float, *, poll_timeout: float = 0.2
    ) -> None:
        """Process batches until ``predicate()`` holds; ``TimeoutError`` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not await predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"projector did not reach the condition within {within} s")
            try:
                await self.process_batch(poll_timeout)
            except ReadModelUnavailable:
                await asyncio.sleep(0.05)

    async def process_batch(self, poll_timeout: float = 0.5) -> int:
        """Fetch one batch and apply it, partition by partition, in offset order. Returns records handled.

        The fetch runs outside the lock (a rebalance may complete meanwhile: aiokafka hands out only
        records that follow the positions the callbacks sought to); the records are applied under it,
        and dropped when a rebalance callback ran after the fetch returned: the partitions they came
        from were revoked, or sought back to their checkpoints, and are fetched again from there."""
        async with self._lock:
            await self._resolve_pending_seeks()
            if self._dead_letters is not None:
                await self._dead_letters.maintain()  # release redriven / waiting letters, reload blocked
        fetched = await self._consumer.getmany(
            timeout_ms=int(poll_timeout * 1000), max_records=self._max_records
        )
        generation = self._generation  # records fetched across a rebalance match the new positions
        async with self._lock:
            if generation != self._generation:
                dropped = sum(len(records) for records in fetched.values())
                if dropped:
                    _log.info("projector.batch_dropped_after_rebalance", records=dropped)
                return 0
            batches = await self._enter_epochs(fetched)
            return await self._apply_batch(batches)

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
        return batches

    async def _reset_to_epoch(self, tp: TopicPartition, epoch: int) -> None:
        stored = await self.read_model.reset_epoch(self.group, tp.topic, tp.partition, epoch)
        _log.warning(
            "projector.log_epoch_changed", topic=tp.topic, partition=tp.partition, epoch=epoch, stored=stored
        )
        await self._seek_to_checkpoints([tp])

    async def _apply_batch(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> int:
        parsed = {tp: [_parse(record) for record in records] for tp, records in batches.items()}
        done: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {tp: [] for tp in batches}
        finished: set[TopicPartition] = set()
        try:
            await self.read_model.prime_states(
                e.flag_key for events in parsed.values() for e in events if isinstance(e, Event)
            )
            await self._apply_leading_runs(batches, parsed, done)
            for tp, records in batches.items():
                await self._apply_partition(tp, records, parsed[tp], done[tp])
                finished.add(tp)
        except Exception:  # Redis unavailable, or a poison record without a dead-letter queue
            for tp, records in batches.items():  # fetched but not applied: fetch them again
                if tp not in finished and len(done[tp]) < len(records):
                    self._seek(tp, records[len(done[tp])].offset)
            raise
        finally:
            await self._commit({tp: handled[-1].offset + 1 for tp, handled in done.items() if handled})
        return sum(len(handled) for handled in done.values())

    async def _apply_leading_runs(
        self,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
        parsed: dict[TopicPartition, list[Event | Exception]],
        done: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """The plain records every partition's batch starts with, all partitions in ONE round trip
        (:meth:`RedisReadModel.apply_many`); each partition's floors chain from its own floor."""
        runs: list[tuple[TopicPartition, ConsumerRecord[Any, Any], Event]] = []
        items: list[tuple[Event, Checkpoint]] = []
        for tp, records in batches.items():
            floor = self._floors.get(tp)
            for record, event in zip(
                records, parsed[tp][: await self._plain_run(parsed[tp], 0)], strict=False
            ):
                assert isinstance(event, Event)
                runs.append((tp, record, event))
                items.append((event, self._checkpoint(tp, record.offset, floor)))
                floor = record.offset + 1
        if not items:
            return
        results = await self.read_model.apply_many(items)
        stopped: set[TopicPartition] = set()
        for (tp, record, event), result in zip(runs, results, strict=True):
            if result is None or tp in stopped:  # the rest of this partition: one at a time
                stopped.add(tp)
                continue
            self._observe(event, result.outcome.value, result.environments, tp, record.offset + 1)
            self._floors[tp] = record.offset + 1
            done[tp].append(record)

    async def _apply_partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        parsed: list[Event | Exception],
        done: list[ConsumerRecord[Any, Any]],
    ) -> None:
        """The records of ``tp`` from ``len(done)`` on: one at a time through :meth:`_apply_one`
        (a record that did not go as planned, or is not plain), then the next plain run batched."""
        i = len(done)
        while i < len(records):
            if not await self._apply_one(tp, records[i], parsed[i]):
                return
            done.append(records[i])
            i += 1
            run = await self._plain_run(parsed, i)
            if run > 1:
                i += await self._apply_run(tp, records[i : i + run], parsed[i : i + run], done)

    async def _plain_run(self, parsed: list[Event | Exception], start: int) -> int:
        """How many records from ``start`` are events of projected, unblocked streams."""
        end = start
        while end < len(parsed):
            event = parsed[end]
            if not isinstance(event, Event) or not is_projected_stream(event.flag_key):
                break
            if self._dead_letters is not None and not await self._is_unblocked(event.flag_key):
                break
            end += 1
        return end - start

    async def _is_unblocked(self, flag_key: str) -> bool:
        """The dead-letter gate lets ``flag_key`` through (not known: the record goes one at a time,
        where :meth:`ProjectorDeadLetters.screen` decides and reports a store outage)."""
        assert self._dead_letters is not None
        try:
            return not await self._dead_letters.gate.is_blocked(flag_key)
        except StoreUnavailable:
            return False

    async def _apply_run(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        events: list[Event | Exception],
        done: list[ConsumerRecord[Any, Any]],
    ) -> int:
        """Apply plain records in one round trip; returns how many went as planned (appended to
        ``done``). Each floor is the checkpoint its predecessor writes (see ``apply_many``)."""
        floor, before = self._floors.get(tp), len(done)
        items: list[tuple[Event, Checkpoint]] = []
        for record, event in zip(records, events, strict=True):
            assert isinstance(event, Event)
            items.append((event, self._checkpoint(tp, record.offset, floor)))
            floor = record.offset + 1
        results = await self.read_model.apply_many(items)
        for record, (event, _), result in zip(records, items, results, strict=True):
            if result is None:
                return len(done) - before
            self._observe(event, result.outcome.value, result.environments, tp, record.offset + 1)
            self._floors[tp] = record.offset + 1
            done.append(record)
        return len(done) - before

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

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Kafka offsets are for lag visibility only (the Redis checkpoint, written with each change, is
        the truth), so they are committed at most every :data:`_COMMIT_INTERVAL` seconds: an awaited
        commit per batch put a broker round trip on every change's path to the read model."""
        self._uncommitted.update(offsets)
        if self._uncommitted and time.monotonic() - self._last_commit >= _COMMIT_INTERVAL:
            await self._flush_commits()

    async def _flush_commits(self) -> None:
        offsets, self._uncommitted = self._uncommitted, {}
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:  # lag visibility only: Redis holds the truth
            _log.warning("projector.commit_failed", error=str(e))

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


def _parse(record: ConsumerRecord[Any, Any]) -> Event | Exception:
    try:
        return Event.from_json(record.value)
    except (ValidationError, ValueError, TypeError) as e:
        return e
