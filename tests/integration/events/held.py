"""A transaction kept open on purpose, through which the real store appends.

The store's ``append`` opens ``conn.transaction()``; on a connection already inside a transaction
asyncpg makes that a savepoint, so the events stay uncommitted until :meth:`HeldTransaction.commit`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg

from events.store.postgres import PostgresEventStore


class _OneConnection:
    """Just enough of ``asyncpg.Pool`` for the store, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._conn.fetch(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self._conn.execute(query, *args))


class HeldTransaction:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: Any = None
        self._tx: Any = None
        self.store: PostgresEventStore

    async def __aenter__(self) -> HeldTransaction:
        self._conn = await self._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self.store = PostgresEventStore(_OneConnection(self._conn))  # type: ignore[arg-type,unused-ignore]
        return self

    async def commit(self) -> None:
        if self._tx is not None:
            await self._tx.commit()
            self._tx = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._tx is not None:
                await self._tx.rollback()
        finally:
            await self._pool.release(self._conn)
