"""The rollback worker process: ``python -m workers.rollback``.

Wiring: settings -> migrations -> pool -> store -> command service -> :class:`RollbackWorker`, fed
by a Kafka consumer of ``settings.metric_alerts_topic`` (group ``settings.rollback_group``, no
auto-commit, from the earliest offset). Each alert record is handled in its own task (a
confirmation delay must not hold up the next alert); a partition's offset is committed up to the
first record whose task is still running, so a restart redelivers unfinished alerts — harmless,
every effect is idempotent. SIGTERM or SIGINT: stop polling, cancel the waits, commit what is
done, exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from core.alerts import ALERT_STREAM_PREFIX
from core.envelope import Event
from core.errors import FlagstreamError
from events.commands.service import CommandService
from events.kafka.adapter import ensure_topics, make_consumer, metric_alerts_spec
from events.rollback.alerts import AlertQueries
from events.rollback.worker import FlagResult, RollbackPolicy, RollbackWorker
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from monitoring import metrics
from monitoring.logging import configure_logging
from runtime.settings import Settings, SettingsError, load_settings

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
    """Feeds alert records to a :class:`RollbackWorker`, one task each; commits what is finished."""

    def __init__(self, worker: RollbackWorker, consumer: Consumer, *, poll_ms: int = 100) -> None:
        self._worker = worker
        self._consumer = consumer
        self._poll_ms = poll_ms
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
                        task = asyncio.create_task(self._handle(record))
                        self._pending.setdefault(tp, deque()).append((record.offset, task))
                await self._commit_finished()
        finally:
            for queue in self._pending.values():
                for _, task in queue:
                    task.cancel()
            await asyncio.gather(*(t for q in self._pending.values() for _, t in q), return_exceptions=True)
            await self._commit_finished()
            log.info("rollback.stopped", handled=len(self.results))

    async def _handle(self, record: _Record) -> list[FlagResult]:
        try:
            return await self._handle_record(record)
        finally:
            self.records_done += 1

    async def _handle_record(self, record: _Record) -> list[FlagResult]:
        try:
            event = Event.from_json(record.value or b"")
        except ValueError as e:
            log.warning("rollback.unreadable_record", offset=record.offset, error=str(e)[:200])
            return []
        if not event.flag_key.startswith(ALERT_STREAM_PREFIX):
            return []
        for attempt in range(1, _RETRIES + 1):
            try:
                results = await self._worker.handle(event)
            except FlagstreamError as e:
                if not e.retriable or attempt == _RETRIES:
                    log.error("rollback.failed", alert_event=str(event.event_id), error=e.message)
                    metrics.observe_rollback("failed")
                    return []
                log.warning("rollback.retrying", alert_event=str(event.event_id), attempt=attempt,
                            error=e.message)
                await asyncio.sleep(0.5 * 2**attempt)  # back-off before a retry of an idempotent step
                continue
            self.results.extend(results)
            return results
        return []

    async def _commit_finished(self) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, queue in self._pending.items():
            while queue and queue[0][1].done():
                offset, _ = queue.popleft()
                offsets[tp] = offset + 1
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as e:  # a failed commit only means a redelivery later
                log.warning("rollback.commit_failed", error_class=type(e).__name__, error=str(e)[:200])


async def run_rollback_worker(settings: Settings, stop: asyncio.Event) -> None:
    database_url, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    if not database_url or not bootstrap:
        raise SettingsError("the rollback worker needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS")
    await apply_migrations(database_url)
    await ensure_topics(bootstrap, [metric_alerts_spec(settings.metric_alerts_topic)])
    pool = await create_pool(database_url, min_size=1, max_size=4,
                             command_timeout=settings.db_command_timeout_seconds)
    store = PostgresEventStore(pool)
    worker = RollbackWorker(
        store,
        CommandService(store, clock=_utc_now, new_id=uuid.uuid4),
        AlertQueries(pool),
        RollbackPolicy.from_settings(settings),
        clock=_utc_now,
    )
    consumer = make_consumer(bootstrap, settings.metric_alerts_topic, group_id=settings.rollback_group,
                             client_id=f"{settings.kafka_client_id}-rollback", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        await AlertConsumer(worker, consumer).run(stop)
    finally:
        await consumer.stop()
        await pool.close()


def _version() -> str:
    try:
        return version("flagstream")
    except PackageNotFoundError:
        return "dev"


async def _main() -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)
    metrics.set_build_info(_version(), "rollback")
    server = metrics.start_metrics_server(settings.metrics_port) if settings.metrics_port > 0 else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_rollback_worker(settings, stop)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
    return 0


def main() -> None:
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
