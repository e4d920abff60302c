"""The guarded store on a real Postgres: an append is retried only when nothing was sent, and an
ambiguous failure is settled by reading the stream — never re-applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from core.commands import CreateFlag
from core.envelope import Event
from core.model import Flag
from events.commands.service import CommandMeta, CommandService
from events.errors import StoreUnavailable
from events.resilience import AsyncCircuitBreaker
from events.store.db import apply_migrations, create_pool
from events.store.guarded import GuardedEventStore, failed_before_sending
from events.store.idempotency import IdempotencyWrite
from events.store.postgres import PostgresEventStore

pytestmark = pytest.mark.integration


class FlakyStore(PostgresEventStore):
    """Postgres, with the next appends failing as a lost connection would: ``before`` (nothing sent),
    ``after_commit`` (committed, the reply lost) or ``before_commit`` (sent, rolled back)."""

    def __init__(self, pool: asyncpg.Pool, failures: list[str]) -> None:
        super().__init__(pool)
        self.failures = failures
        self.append_calls = 0

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        self.append_calls += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure == "before":
            raise StoreUnavailable("append failed") from ConnectionRefusedError(111, "Connection refused")
        if failure == "before_commit":
            raise StoreUnavailable("append failed") from ConnectionResetError(104, "Connection reset by peer")
        await super().append(events, idempotency=idempotency)
        if failure == "after_commit":
            raise StoreUnavailable("append failed") from ConnectionResetError(104, "Connection reset by peer")


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_migrations(fresh_database)
    created = await create_pool(fresh_database, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


def _service(store: FlakyStore) -> tuple[CommandService, AsyncCircuitBreaker]:
    breaker = AsyncCircuitBreaker("postgres-test", fail_max=5, reset_timeout=5.0, export_metrics=False)
    service = CommandService(
        GuardedEventStore(store, breaker), clock=lambda: datetime.now(UTC), new_id=uuid.uuid4
    )
    return service, breaker


def _create(key: str) -> CreateFlag:
    return CreateFlag(flag_key=key, flag=Flag(key=key, name=key))


async def test_append__refused_before_sending__retried_once_and_stored_once(pool: asyncpg.Pool) -> None:
    store = FlakyStore(pool, ["before"])
    service, _ = _service(store)

    outcome = await service.execute(_create("g-before"), CommandMeta(actor="tester"))

    assert outcome.version == 1
    assert store.append_calls == 2
    assert [e.event_id for e in await store.read_stream("g-before")] == [e.event_id for e in outcome.events]


async def test_append__connection_lost_after_commit__settled_as_success_not_reapplied(
    pool: asyncpg.Pool,
) -> None:
    store = FlakyStore(pool, ["after_commit"])
    service, _ = _service(store)

    outcome = await service.execute(_create("g-after"), CommandMeta(actor="tester"))

    assert store.append_calls == 1
    assert [e.event_id for e in await store.read_stream("g-after")] == [e.event_id for e in outcome.events]


async def test_append__connection_lost_before_commit__unavailable_not_retried_nothing_stored(
    pool: asyncpg.Pool,
) -> None:
    store = FlakyStore(pool, ["before_commit"])
    service, breaker = _service(store)

    with pytest.raises(StoreUnavailable):
        await service.execute(_create("g-lost"), CommandMeta(actor="tester"))

    assert store.append_calls == 1
    assert await store.read_stream("g-lost") == []
    assert breaker.failure_count == 1


def test_failed_before_sending__by_cause_chain() -> None:
    def wrapped(cause: BaseException) -> StoreUnavailable:
        try:
            raise StoreUnavailable("x") from cause
        except StoreUnavailable as e:
            return e

    assert failed_before_sending(wrapped(ConnectionRefusedError()))
    assert failed_before_sending(asyncpg.CannotConnectNowError("starting up"))
    assert not failed_before_sending(wrapped(ConnectionResetError()))
    assert not failed_before_sending(TimeoutError())
