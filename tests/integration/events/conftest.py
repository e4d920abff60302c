"""Fixtures of the write-side tests: a migrated fresh database, a pool and a store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore


@pytest.fixture
async def migrated_database(fresh_database: str) -> str:
    await apply_migrations(fresh_database)
    return fresh_database


@pytest.fixture
async def pool(migrated_database: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(migrated_database, min_size=1, max_size=30)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> PostgresEventStore:
    return PostgresEventStore(pool)
