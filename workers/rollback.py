"""The rollback worker process: ``python -m workers.rollback``.

Wiring: settings -> migrations -> pool -> store -> command service -> :class:`RollbackWorker`, fed
by a Kafka consumer of ``settings.metric_alerts_topic`` (group ``settings.rollback_group``, no
auto-commit, from the earliest offset). Each alert record is handled in its own task (a
confirmation delay must not hold up the next alert); a partition's offset is committed up to the
first record whose task is still running, so a restart redelivers unfinished alerts — harmless,
every effect is idempotent. What the worker cannot do is parked as a ``rollback`` dead letter
(:mod:`events.rollback.letters`) before its offset is committed; redriven letters are run again.
SIGTERM or SIGINT: stop polling, cancel the waits, commit what is done (a cancelled wait is not
done: it is redelivered), exit 0 — within ``shutdown_grace_seconds`` (:func:`workers._runner.run_bounded`).
The consumer is started inside the ``try`` that stops it: one whose start fails is closed all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from core.alerts import ALERT_STREAM_PREFIX
from core.envelope import Event
from events.commands.service import CommandService
from events.deadletters import DeadLetterStore, KafkaCoordinates
from events.kafka.adapter import ensure_topics, make_consumer, metric_alerts_spec
from events.resilience import is_retriable
from events.rollback.alerts import AlertQueries
from events.rollback.letters import RollbackLetters
from events.rollback.worker import FlagResult, RollbackPolicy, RollbackWorker
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from monitoring import metrics
from runtime.settings import Settings, SettingsError
from workers._runner import run_bounded, run_worker

__all__ = ["AlertConsumer", "main", "run_rollback_worker"]

log = structlog.get_logger("workers.rollback")

_RETRIES = 5


class _Record(Protocol):
    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


class Consumer(Protocol):
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> Mapping[TopicPartition, Sequence[Any]]: ...

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlertConsumer:
    """Feeds alert records to a :class:`RollbackWorker`, one task each; commits what is finished.

    With ``letters``, an alert the worker cannot act on — a permanent error, or retriable ones past
    ``retries`` attempts — is parked as a ``rollback`` dead letter before its offset is committed,
    and redriven letters are handed back to the worker every ``release_interval`` seconds. A task
    that could not even park its alert (Postgres down) stops the consumer without committing it:
    the alert is redelivered to the restarted worker.
    """

    def __init__(
        self,
        worker: RollbackWorker,
        consumer: Consumer,
        *,
        poll_ms: int = 100,
        letters: RollbackLetters | None = None,
        retries: int = _RETRIES,
        retry_base_seconds: float = 0.5,
        release_interval: float = 2.0,
    ) -> None:
        self._worker = worker
        self._consumer = consumer
        self._poll_ms = poll_ms
        self._letters = letters
        self._retries = retries
        self._retry_base = retry_base_seconds
        self._release_interval = release_interval
        self._next_release = 0.0
        self._releasing: asyncio.Task[None] | None = None
        self._pending: dict[TopicPartition, deque[tuple[int, asyncio.Task[list[FlagResult]]]]] = {}
        self.results: list[FlagResult] = []
        self.records_done = 0

    async def run(self, stop: asyncio.Event) -> None:
        log.info("rollback.started")
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
                for tp, records in batches.items():
                    for record in records:
                        task = asyncio.create_task(self._handle(record, tp))
                        self._pending.setdefault(tp, deque()).append((record.offset, task))
                await self._commit_finished()
                self._release_if_due()
        finally:
            tasks: list[asyncio.Task[Any]] = [t for q in self._pending.values() for _, t in q]
            if self._releasing is not None:
                tasks.append(self._releasing)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):  # the error that stopped the loop is the one to see
                await self._commit_finished()
            log.info("rollback.stopped", handled=len(self.results))

    async def _handle(self, record: _Record, tp: TopicPartition) -> list[FlagResult]:
        try:
            return await self._handle_record(record, KafkaCoordinates(tp.topic, tp.partition, record.offset))
        finally:
            self.records_done += 1

    async def _handle_record(self, record: _Record, kafka: KafkaCoordinates) -> list[FlagResult]:
        try:
            event = Event.from_json(record.value or b"")
        except ValueError as e:
            log.warning("rollback.unreadable_record", offset=record.offset, error=str(e)[:200])
            if self._letters is not None:
                await self._letters.park_record(record.value or b"", e, kafka=kafka)
            return []
        if not event.flag_key.startswith(ALERT_STREAM_PREFIX):
            return []
        for attempt in range(1, self._retries + 1):
            try:
                results = await self._worker.handle(event)
            except Exception as e:
                if is_retriable(e) and attempt < self._retries:
                    log.warning(
                        "rollback.retrying",
                        alert_event=str(event.event_id),
                        attempt=attempt,
                        error_class=type(e).__name__,
                    )
                    await asyncio.sleep(self._retry_base * 2**attempt)  # back-off; every step is idempotent
                    continue
                log.error(
                    "rollback.failed",
                    alert_event=str(event.event_id),
                    error_class=type(e).__name__,
                    error=str(e)[:200],
                    attempts=attempt,
                )
                metrics.observe_rollback("failed")
                if self._letters is not None:
                    await self._letters.park_alert(event, e, attempts=attempt, kafka=kafka)
                return []
            self.results.extend(results)
            return results
        return []

    async def _commit_finished(self) -> None:
        """Commit each partition up to its first record not handled yet (or whose task failed or was
        cancelled: it is redelivered after a restart); a failed task's error is raised."""
        offsets: dict[TopicPartition, int] = {}
        failure: BaseException | None = None
        for tp, queue in self._pending.items():
            while queue and queue[0][1].done():
                offset, task = queue[0]
                if task.cancelled() or task.exception() is not None:
                    failure = failure or (None if task.cancelled() else task.exception())
                    break
                queue.popleft()
                offsets[tp] = offset + 1
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as e:  # a failed commit only means a redelivery later
                log.warning("rollback.commit_failed", error_class=type(e).__name__, error=str(e)[:200])
        if failure is not None:
            raise failure

    def _release_if_due(self) -> None:
        """Hand redriven rollback letters back to the worker (one release at a time, in the background)."""
        if self._letters is None or (self._releasing is not None and not self._releasing.done()):
            return
        now = asyncio.get_running_loop().time()
        if now < self._next_release:
            return
        self._next_release = now + self._release_interval
        self._releasing = asyncio.create_task(self._release(self._letters))

    async def _release(self, letters: RollbackLetters) -> None:
        try:
            report = await letters.release(self._worker.handle)
        except Exception as e:  # retriable (the letters stay redriven) or a store outage: next time
            log.warning("rollback.release_failed", error_class=type(e).__name__, error=str(e)[:200])
            return
        if report.processed or report.parked:
            log.info("rollback.letters_released", processed=report.processed, parked=report.parked)


async def run_rollback_worker(settings: Settings, stop: asyncio.Event) -> None:
    database_url, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    if not database_url or not bootstrap:
        raise SettingsError("the rollback worker needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS")
    await apply_migrations(database_url)
    await ensure_topics(bootstrap, [metric_alerts_spec(settings.metric_alerts_topic)])
    pool = await create_pool(
        database_url, min_size=1, max_size=4, command_timeout=settings.db_command_timeout_seconds
    )
    store = PostgresEventStore(pool)
    worker = RollbackWorker(
        store,
        CommandService(store, clock=_utc_now, new_id=uuid.uuid4),
        AlertQueries(pool),
        RollbackPolicy.from_settings(settings),
        clock=_utc_now,
    )
    consumer = make_consumer(
        bootstrap,
        settings.metric_alerts_topic,
        group_id=settings.rollback_group,
        client_id=f"{settings.kafka_client_id}-rollback",
        fetch_max_wait_ms=50,
    )
    try:
        await consumer.start()  # inside the try: a start that fails or is cancelled still closes it
        alerts = AlertConsumer(worker, consumer, letters=RollbackLetters(DeadLetterStore(pool)))
        await run_bounded(alerts.run, stop, settings.shutdown_grace_seconds, role="rollback")
    finally:
        await consumer.stop()
        await pool.close()


def main() -> None:
    run_worker("rollback", run_rollback_worker)


if __name__ == "__main__":
    main()
