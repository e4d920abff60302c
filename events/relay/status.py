"""The relay's health in Postgres (table ``relay_status``, migration 0020).

The relay runs in its own process; the API's ``/readyz`` and ``/metrics`` read what it wrote
with :func:`read_relay_status`. The relay writes through :class:`RelayStatusWriter`: at once when
something an operator cares about changes (breaker state, error, blocked flags, a log reset),
otherwise at most once per ``min_interval`` seconds. A failed write is logged and skipped:
reporting never stops publishing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from events.errors import StoreUnavailable
from events.store.db import CONNECTION_ERRORS

__all__ = ["RelayStatus", "RelayStatusWriter", "read_relay_status"]

log = structlog.get_logger(__name__)

_UPSERT = """
INSERT INTO relay_status AS s (name, breaker_state, backlog, oldest_unpublished_at, last_published_at,
    last_error, blocked_flags, log_resets, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
ON CONFLICT (name) DO UPDATE SET breaker_state = EXCLUDED.breaker_state, backlog = EXCLUDED.backlog,
    oldest_unpublished_at = EXCLUDED.oldest_unpublished_at,
    last_published_at = coalesce(EXCLUDED.last_published_at, s.last_published_at),
    last_error = EXCLUDED.last_error, blocked_flags = EXCLUDED.blocked_flags,
    updated_at = now()"""


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What one relay last reported. ``degraded``: its breaker is not closed (Kafka is failing);
    appends still succeed, publication waits. ``updated_at`` tells how fresh the report is."""

    name: str
    breaker_state: str  # closed | open | half_open
    backlog: int
    oldest_unpublished_at: datetime | None
    last_published_at: datetime | None
    last_error: str | None
    blocked_flags: int
    log_resets: int
    updated_at: datetime | None = None

    @property
    def degraded(self) -> bool:
        return self.breaker_state != "closed"


async def read_relay_status(pool: asyncpg.Pool) -> list[RelayStatus]:
    """Every relay's last report, by name. Postgres unreachable: :class:`StoreUnavailable`."""
    try:
        rows = await pool.fetch("SELECT * FROM relay_status ORDER BY name")
    except CONNECTION_ERRORS as e:
        raise StoreUnavailable(f"relay status unavailable, Postgres unreachable: {e}") from e
    return [_to_status(r) for r in rows]


def _to_status(row: Any) -> RelayStatus:
    return RelayStatus(
        name=row["name"],
        breaker_state=row["breaker_state"],
        backlog=row["backlog"],
        oldest_unpublished_at=row["oldest_unpublished_at"],
        last_published_at=row["last_published_at"],
        last_error=row["last_error"],
        blocked_flags=row["blocked_flags"],
        log_resets=row["log_resets"],
        updated_at=row["updated_at"],
    )


def _significant(status: RelayStatus) -> tuple[object, ...]:
    return (status.breaker_state, status.last_error, status.blocked_flags, status.log_resets)


class RelayStatusWriter:
    """Keeps the relay's current status and writes it when it matters (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        name: str,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._min_interval = min_interval
        self._clock = clock
        self.current = RelayStatus(name, "closed", 0, None, None, None, 0, 0)
        self._written: RelayStatus | None = None
        self._written_at = float("-inf")

    async def update(self, **changes: Any) -> None:
        """Merge ``changes`` (fields of :class:`RelayStatus`) and write if due."""
        self.current = replace(self.current, **changes)
        due = self._clock() - self._written_at >= self._min_interval
        changed = self._written is None or _significant(self._written) != _significant(self.current)
        if changed or (due and self._written != self.current):
            await self.flush()

    async def count_log_reset(self) -> None:
        """The broker lost its log once more: count it (kept across relay restarts)."""
        await self.flush()
        try:
            resets = await self._pool.fetchval(
                "UPDATE relay_status SET log_resets = log_resets + 1, updated_at = now()"
                " WHERE name = $1 RETURNING log_resets", self.current.name,
            )
        except CONNECTION_ERRORS as e:
            log.warning("relay.status_not_written", relay=self.current.name, error=str(e))
            return
        if resets is not None:
            self.current = replace(self.current, log_resets=resets)
            self._written = self.current

    async def flush(self) -> None:
        status = self.current
        try:
            await self._pool.execute(
                _UPSERT, status.name, status.breaker_state, status.backlog, status.oldest_unpublished_at,
                status.last_published_at, status.last_error, status.blocked_flags, status.log_resets,
            )
        except CONNECTION_ERRORS as e:
            log.warning("relay.status_not_written", relay=status.name, error=str(e))
            return
        self._written, self._written_at = status, self._clock()
