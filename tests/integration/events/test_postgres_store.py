"""The Postgres event store: the shared contract, concurrency, immutability and the xid horizon."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from events.errors import VersionConflict
from events.ports import EventStore, RelayPosition
from events.store.db import EVENTS_CHANNEL
from events.store.idempotency import IDEMPOTENCY_TTL
from events.store.postgres import PostgresEventStore
from tests.integration.events.held import HeldTransaction
from tests.unit.events.factories import make_chain, make_event
from tests.unit.events.store_contract import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _use_pool(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def make_store(self, *, idempotency_ttl: timedelta = IDEMPOTENCY_TTL) -> EventStore:
        return PostgresEventStore(self._pool, idempotency_ttl=idempotency_ttl)


async def test_append__ten_concurrent_same_version__one_wins_others_conflict_at_current(
    store: PostgresEventStore,
) -> None:
    await store.append(make_chain("race", 2))
    contenders = [make_event("race", 3) for _ in range(10)]
    results = await asyncio.gather(*(store.append([e]) for e in contenders), return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert results.count(None) == 1
    assert len(conflicts) == 9
    assert {c.current_version for c in conflicts} == {3}
    assert await store.current_version("race") == 3


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET actor = 'mallory'", "DELETE FROM events", "TRUNCATE events"],
)
async def test_events_table__update_delete_truncate__refused(
    store: PostgresEventStore, pool: asyncpg.Pool, statement: str
) -> None:
    await store.append(make_chain("immutable", 2))
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await pool.execute(statement)
    assert await store.count() == 2


async def test_read_committed_after__row_commits_late__held_back_then_read_not_skipped(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    async with HeldTransaction(pool) as held:
        await held.store.append(make_chain("late", 1))
        await store.append(make_chain("early", 1))  # later xid, commits first
        assert await store.count() == 1
        assert await store.read_committed_after(RelayPosition(), 100) == []
        await held.commit()
    rows = await store.read_committed_after(RelayPosition(), 100)
    assert [r.event.flag_key for r in rows] == ["late", "early"]
    assert rows[0].seq < rows[1].seq


async def test_read_committed_after__from_a_position__continues_after_it(store: PostgresEventStore) -> None:
    await store.append(make_chain("a", 3))
    first = await store.read_committed_after(RelayPosition(), 2)
    rest = await store.read_committed_after(first[-1].position, 100)
    assert [r.event.version for r in first + rest] == [1, 2, 3]


async def test_checkpoint__saved__loads_back_and_never_moves_backwards(store: PostgresEventStore) -> None:
    assert await store.load_checkpoint("r") == RelayPosition()
    await store.save_checkpoint("r", RelayPosition(10, 5))
    await store.save_checkpoint("r", RelayPosition(9, 7))
    assert await store.load_checkpoint("r") == RelayPosition(10, 5)


async def test_backlog__counts_events_after_position(store: PostgresEventStore) -> None:
    await store.append(make_chain("a", 3))
    rows = await store.read_committed_after(RelayPosition(), 1)
    count, oldest = await store.backlog(rows[0].position)
    assert count == 2
    assert oldest is not None


async def test_append__one_statement_batch__seq_follows_version_and_relay_reads_in_order(
    store: PostgresEventStore,
) -> None:
    await store.append(make_chain("batch", 5))
    rows = await store.read_committed_after(RelayPosition(), 100)
    assert [r.event.version for r in rows] == [1, 2, 3, 4, 5]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert len({r.txid for r in rows}) == 1  # one transaction


async def test_append__committed__notifies_the_relay_channel_and_a_conflict_does_not(
    store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    notified: asyncio.Queue[str] = asyncio.Queue()

    def on_notice(*args: object) -> None:
        notified.put_nowait(str(args[3]))

    async with pool.acquire() as listener:
        await listener.add_listener(EVENTS_CHANNEL, on_notice)
        try:
            await store.append(make_chain("notify", 1))
            assert await asyncio.wait_for(notified.get(), timeout=5) == ""
            with pytest.raises(VersionConflict):
                await store.append([make_event("notify", 1)])
            await pool.execute("SELECT pg_notify($1, 'marker')", EVENTS_CHANNEL)  # notices keep commit order
            assert await asyncio.wait_for(notified.get(), timeout=5) == "marker"  # the conflict sent none
        finally:
            await listener.remove_listener(EVENTS_CHANNEL, on_notice)
