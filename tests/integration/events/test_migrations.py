"""Migrations: applied once, in order, safe to run again and from several processes at once."""

from __future__ import annotations

import asyncio

import asyncpg

from events.store.db import apply_migrations, load_migrations


async def _recorded(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
    finally:
        await conn.close()


async def test_migrations__fresh_database__all_applied_and_recorded(fresh_database: str) -> None:
    applied = await apply_migrations(fresh_database)
    expected = [m.version for m in load_migrations()]
    assert applied == expected
    assert await _recorded(fresh_database) == expected


async def test_migrations__run_twice__second_run_applies_nothing(fresh_database: str) -> None:
    await apply_migrations(fresh_database)
    assert await apply_migrations(fresh_database) == []


async def test_migrations__four_processes_at_once__each_applied_exactly_once(fresh_database: str) -> None:
    results = await asyncio.gather(*(apply_migrations(fresh_database) for _ in range(4)))
    applied = [version for result in results for version in result]
    assert sorted(applied) == [m.version for m in load_migrations()]
    assert await _recorded(fresh_database) == [m.version for m in load_migrations()]
