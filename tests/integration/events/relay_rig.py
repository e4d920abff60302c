"""A relay wired like the worker's (breaker, retries, dead letters, log guard, status) for tests,
and checks on what reached the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from core.envelope import Event
from events.deadletters import DeadLetterStore
from events.kafka.adapter import KafkaPublisher, TopicSpec, make_producer
from events.ports import PublishedRecord
from events.relay.letters import RelayLetters
from events.relay.log_guard import LogGuard
from events.relay.relay import Relay
from events.relay.status import RelayStatusWriter
from events.resilience import AsyncCircuitBreaker, RetryPolicy
from events.store.postgres import PostgresEventStore
from tests.integration.events.kafka_log import LogRecord

FAST_RETRY = RetryPolicy(max_attempts=2, max_delay=2.0, initial_wait=0.05, max_wait=0.2)


class CountingPublisher:
    """The real publisher, counting how often the relay called it (to prove there is no hammering)."""

    def __init__(self, inner: KafkaPublisher) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def log_epoch(self) -> int:
        return self.inner.log_epoch

    @log_epoch.setter
    def log_epoch(self, epoch: int) -> None:  # the relay's log guard stamps it on every record
        self.inner.log_epoch = epoch

    async def publish(self, events: Sequence[Event]) -> Sequence[PublishedRecord]:
        self.calls += 1
        return await self.inner.publish(events)


@dataclass
class RelayRig:
    relay: Relay
    publisher: CountingPublisher
    letters: RelayLetters
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.relay.run(self.stop))


def make_publisher(
    bootstrap: str,
    topic: str,
    alerts_topic: str,
    *,
    max_record_bytes: int = 1_000_000,
    send_timeout: float = 3.0,
) -> KafkaPublisher:
    return KafkaPublisher(
        None,
        topic,
        metric_alerts_topic=alerts_topic,
        send_timeout=send_timeout,
        max_record_bytes=max_record_bytes,
        renew=lambda: make_producer(bootstrap, request_timeout_ms=2_000, linger_ms=0),
    )


@asynccontextmanager
async def relay_rig(
    pool: asyncpg.Pool,
    bootstrap: str,
    topics: Sequence[TopicSpec],
    *,
    name: str = "flag-events",
    max_record_bytes: int = 1_000_000,
    probe_interval: float = 30.0,
    batch_size: int = 100,
) -> AsyncIterator[RelayRig]:
    publisher = CountingPublisher(
        make_publisher(bootstrap, topics[0].name, topics[-1].name, max_record_bytes=max_record_bytes)
    )
    letters = RelayLetters(DeadLetterStore(pool), pool)
    relay = Relay(
        PostgresEventStore(pool),
        publisher,
        name=name,
        topic=topics[0].name,
        batch_size=batch_size,
        poll_interval=0.05,
        retry_delay=0.2,
        breaker=AsyncCircuitBreaker(f"test-{name}", fail_max=2, reset_timeout=1.0, export_metrics=False),
        retry=FAST_RETRY,
        letters=letters,
        guard=LogGuard(pool, name, bootstrap=bootstrap, topics=topics, probe_timeout=3.0),
        status=RelayStatusWriter(pool, name, min_interval=0.2),
        probe_interval=probe_interval,
    )
    rig = RelayRig(relay, publisher, letters, asyncio.Event())
    try:
        yield rig
    finally:
        rig.stop.set()
        if rig.task is not None:
            await asyncio.wait_for(rig.task, 30)
        await publisher.inner.close()


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str = "") -> None:
    """Poll ``check`` until it holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.05)


def first_versions(records: Iterable[LogRecord], key: str) -> list[int]:
    """The versions of ``key`` in log order, each at its first occurrence (redeliveries dropped)."""
    seen: list[int] = []
    for record in records:
        if record.key == key and record.version not in seen:
            seen.append(record.version)
    return seen
