"""Postgres plumbing: the connection pool, the migration runner and a LISTEN connection.

Migrations are the plain SQL files ``events/migrations/NNNN_name.sql``, applied in order, each
in its own transaction, and recorded in ``schema_migrations``. Two processes starting together
are safe: the runner holds a session advisory lock while it looks and applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
import structlog

from events.errors import MigrationFailed, StoreUnavailable

__all__ = [
    "EVENTS_CHANNEL",
    "Listener",
    "Migration",
    "apply_migrations",
    "connect",
    "create_pool",
    "load_migrations",
]

log = structlog.get_logger(__name__)

EVENTS_CHANNEL = "flagstream_events"
_MIGRATION_LOCK = 0x466C_6167_5354_0001  # "FlagST" + 1: one advisory lock key for the runner
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """Every migration shipped in ``events/migrations``, in version order."""
    migrations = []
    for entry in resources.files("events").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationFailed(f"two migration files share a version: {versions}")
    return migrations


async def connect(dsn: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """One connection (for migrations and LISTEN); connection failures become StoreUnavailable."""
    try:
        return await asyncpg.connect(dsn, timeout=connect_timeout)
    except CONNECTION_ERRORS as e:
        raise StoreUnavailable(f"cannot connect to Postgres: {e}") from e


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool connections hold no session state (no session advisory locks, LISTEN or SET: those use
    dedicated connections), so asyncpg's reset query on every release is a wasted round trip."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 10.0
) -> asyncpg.Pool:
    """An asyncpg pool; it reconnects by itself after a server restart."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, command_timeout=command_timeout,
            reset=_keep_session,
        )
    except CONNECTION_ERRORS as e:
        raise StoreUnavailable(f"cannot connect to Postgres: {e}") from e
    assert pool is not None
    return pool


async def apply_migrations(dsn: str) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied by this call."""
    migrations = load_migrations()
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            return await _apply_missing(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()


async def _apply_missing(conn: asyncpg.Connection, migrations: list[Migration]) -> list[int]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    applied = {r["version"]: r["checksum"] for r in rows}
    done: list[int] = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                log.warning("db.migration_changed", version=migration.version, name=migration.name)
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum,
                )
        except asyncpg.PostgresError as e:
            raise MigrationFailed(f"migration {migration.version}_{migration.name} failed: {e}") from e
        log.info("db.migration_applied", version=migration.version, name=migration.name)
        done.append(migration.version)
    return done


class Listener:
    """A dedicated connection LISTENing on one channel; :meth:`ensure` re-registers after a loss.

    Notifications only set :attr:`woken`; whoever waits on it must still poll as a fallback,
    because notifications sent while the connection was down are gone.
    """

    def __init__(self, dsn: str, channel: str = EVENTS_CHANNEL) -> None:
        self._dsn = dsn
        self._channel = channel
        self._conn: asyncpg.Connection | None = None
        self.woken = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """(Re)connect and LISTEN if needed; False when Postgres cannot be reached now."""
        if self.connected:
            return True
        await self.close()
        try:
            conn = await connect(self._dsn)
            await conn.add_listener(self._channel, self._on_notify)
        except StoreUnavailable as e:
            log.warning("db.listen_failed", channel=self._channel, error=e.message)
            return False
        except CONNECTION_ERRORS as e:
            log.warning("db.listen_failed", channel=self._channel, error=str(e))
            return False
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self.woken.set()  # anything may have been appended while we were not listening
        log.info("db.listening", channel=self._channel)
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except CONNECTION_ERRORS:
                conn.terminate()

    def _on_notify(self, *_: Any) -> None:
        self.woken.set()

    def _on_terminated(self, *_: Any) -> None:
        self.woken.set()
