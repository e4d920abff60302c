"""A migrated database and a DeadLetterStore for each test (the session Postgres, a fresh database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest

from events.deadletters import DeadLetterStore

pytestmark = pytest.mark.integration


def dead_letters_migration() -> str:
    return resources.files("events").joinpath("migrations/0010_dead_letters.sql").read_text("utf-8")


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database holding only the dead_letters table (migration 0010 run directly)."""
    created = await asyncpg.create_pool(fresh_database, min_size=1, max_size=12, command_timeout=10)
    assert created is not None
    try:
        await created.execute(dead_letters_migration())
        yield created
    finally:
        await created.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> DeadLetterStore:
    return DeadLetterStore(pool)
