"""The projector: a consumer group on the flag-events topic, applying records to the read model.

The work is split by what it does:

- :mod:`projections.positions` — where the projector stands in each partition: checkpoints (Redis
  is the truth), log epochs, seeks, and the rebalance listener (one lock with the batch);
- :mod:`projections.runs` — the batched apply loops: the leading plain run of every partition in
  one round trip, then each partition's later plain runs;
- :mod:`projections.one_at_a_time` — one record at a time: skips, dead letters, poison, rewinds;
- here — the consumer's life, the fetch loop, and Kafka offsets: committed best effort, after
  Redis has the change (lag visibility only: the Redis checkpoint is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from core.envelope import Event
from events.kafka.adapter import make_consumer
from projections.deadletters import ProjectorDeadLetters
from projections.errors import ReadModelUnavailable
from projections.one_at_a_time import parse_record
from projections.positions import SeekOnAssignment
from projections.readmodel import RedisReadModel
from projections.runs import BatchedRuns

__all__ = ["DEFAULT_GROUP", "Projector"]

DEFAULT_GROUP = "flagstream-projector"
_COMMIT_INTERVAL = 1.0
_log = structlog.get_logger("projections.projector")


class Projector(BatchedRuns):
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
        self._max_records = max_records
        consumer = make_consumer(
            bootstrap_servers,
            group_id=group,
            client_id=client_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,  # the broker may hold an empty fetch this long: latency
        )
        super().__init__(consumer, read_model, group=group, topic=topic, dead_letters=dead_letters)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_commit = 0.0

    async def start(self) -> None:
        if self._dead_letters is not None:
            await self._dead_letters.start()
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=SeekOnAssignment(self))

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

    async def _apply_batch(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> int:
        parsed = {tp: [parse_record(record) for record in records] for tp, records in batches.items()}
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
