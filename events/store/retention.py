"""Retention of ``idempotency_keys``: rows older than the idempotency TTL answer nothing any more
(lookups ignore them), so they are deleted in the background, in bounded batches, and counted
(``flagstream_idempotency_keys_purged_total``). The API process runs :func:`run_retention`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import structlog

from monitoring import metrics

__all__ = ["purge_idempotency_keys", "run_retention"]

log = structlog.get_logger("events.store.retention")

_BATCH = 1_000
_PURGE_BATCH = """
DELETE FROM idempotency_keys WHERE ctid IN (
    SELECT ctid FROM idempotency_keys WHERE created_at <= now() - $1::interval LIMIT $2
)
"""


async def purge_idempotency_keys(pool: asyncpg.Pool, retention: timedelta, *, batch: int = _BATCH) -> int:
    """Delete every key older than ``retention`` (batch by batch, short transactions); the count."""
    total = 0
    while True:
        status: str = await pool.execute(_PURGE_BATCH, retention, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            break
    if total:
        metrics.record_idempotency_purge(total)
        log.info("retention.idempotency_purged", count=total)
    return total


async def run_retention(
    pool: asyncpg.Pool, retention: timedelta, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Purge now and every ``interval_seconds`` until ``stop``; a failed round is logged and retried."""
    while not stop.is_set():
        try:
            await purge_idempotency_keys(pool, retention)
        except (asyncpg.PostgresError, OSError) as e:
            log.warning("retention.purge_failed", error_class=type(e).__name__)
        try:
            await asyncio.wait_for(stop.wait(), interval_seconds)
        except TimeoutError:
            continue
