"""idempotency_keys are purged after the retention period, in the background, and counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from events.store.db import apply_migrations, create_pool
from events.store.retention import purge_idempotency_keys, run_retention
from monitoring.metrics import REGISTRY
from tests.integration.platform import module_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with module_database(database_url) as database:
        await apply_migrations(database)
        pool = await create_pool(database, min_size=1, max_size=2)
        try:
            yield pool
        finally:
            await pool.close()


async def _insert(pool: asyncpg.Pool, key: str, age: timedelta) -> None:
    await pool.execute(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status, response, created_at)"
        " VALUES ('p', $1, 'h', 200, '{}', now() - $2::interval)",
        key,
        age,
    )


async def _keys(pool: asyncpg.Pool) -> set[str]:
    return {r["key"] for r in await pool.fetch("SELECT key FROM idempotency_keys")}


async def _until_empty(pool: asyncpg.Pool, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if not await _keys(pool):
            return
        await asyncio.sleep(0.05)  # polling the table for the purge, bounded by the deadline


def _purged() -> float:
    return REGISTRY.get_sample_value("flagstream_idempotency_keys_purged_total") or 0.0


async def test_purge__deletes_only_keys_past_retention__in_batches__counted(pool: asyncpg.Pool) -> None:
    for i in range(7):
        await _insert(pool, f"old-{i}", timedelta(days=2))
    await _insert(pool, "fresh", timedelta(hours=1))
    before = _purged()

    deleted = await purge_idempotency_keys(pool, timedelta(days=1), batch=3)

    assert deleted == 7
    assert await _keys(pool) == {"fresh"}
    assert _purged() - before == 7


async def test_background_task__purges_and_stops(pool: asyncpg.Pool) -> None:
    await _insert(pool, "old", timedelta(days=2))
    stop = asyncio.Event()
    task = asyncio.create_task(run_retention(pool, timedelta(days=1), 0.05, stop))
    await _until_empty(pool)
    await _insert(pool, "old-again", timedelta(days=3))
    await _until_empty(pool)  # the next round purges what aged since
    stop.set()
    await asyncio.wait_for(task, 5)

    assert await _keys(pool) == set()
