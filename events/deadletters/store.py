"""The dead-letter queue on Postgres (table ``dead_letters``, migration 0010), through asyncpg."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

import asyncpg

from core.errors import FlagstreamError
from events.deadletters.models import (
    MAX_PAGE,
    WAITING,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterPage,
    DeadLetterResolved,
    DeadLetterStats,
    DeadLetterStatus,
    KafkaCoordinates,
    NewDeadLetter,
    Stage,
)
from events.deadletters.ordering import UNKNOWN_VERSION, Blockers
from events.errors import StoreUnavailable
from events.resilience.classify import is_retriable

__all__ = ["DeadLetterStore"]

_PARK = """
INSERT INTO dead_letters AS d (stage, dedup_key, flag_key, version, event_id, event_body, raw_record,
    error_class, error_message, attempts, first_failed_at, last_failed_at,
    kafka_topic, kafka_partition, kafka_offset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now()), coalesce($11, now()), $12, $13, $14)
ON CONFLICT (stage, dedup_key) WHERE status = 'parked' DO UPDATE SET
    attempts = CASE WHEN EXCLUDED.error_class = $15 THEN d.attempts
                    WHEN d.error_class = $15 THEN EXCLUDED.attempts
                    ELSE d.attempts + EXCLUDED.attempts END,
    last_failed_at = greatest(d.last_failed_at, EXCLUDED.last_failed_at),
    error_class = CASE WHEN EXCLUDED.error_class = $15 THEN d.error_class ELSE EXCLUDED.error_class END,
    error_message = CASE WHEN EXCLUDED.error_class = $15 THEN d.error_message ELSE EXCLUDED.error_message END,
    event_body = coalesce(d.event_body, EXCLUDED.event_body),
    raw_record = coalesce(d.raw_record, EXCLUDED.raw_record),
    kafka_topic = coalesce(EXCLUDED.kafka_topic, d.kafka_topic),
    kafka_partition = coalesce(EXCLUDED.kafka_partition, d.kafka_partition),
    kafka_offset = coalesce(EXCLUDED.kafka_offset, d.kafka_offset)
RETURNING *, (xmax = 0) AS inserted"""
_RESOLVE = """
UPDATE dead_letters SET status = $2, resolved_at = now(), resolved_by = $3, resolve_reason = $4
 WHERE id = $1 AND status = 'parked' RETURNING *"""
_BLOCKING: Final = "(status = 'parked' OR (status = 'redriven' AND reprocessed_at IS NULL))"
_BLOCKED = f"""
SELECT DISTINCT flag_key FROM dead_letters WHERE stage = $1 AND flag_key IS NOT NULL AND {_BLOCKING}"""
_FLOORS = f"""
SELECT flag_key, min(coalesce(version, {UNKNOWN_VERSION})) AS floor FROM dead_letters
 WHERE stage = $1 AND flag_key IS NOT NULL AND {_BLOCKING} GROUP BY flag_key"""
# The ordering rule (events.deadletters.ordering) in SQL: a letter is held by a parked blocker of its
# flag at or below its version (or of unknown version).
_RELEASABLE = """
SELECT * FROM dead_letters d
 WHERE d.stage = $1
   AND ((d.status = 'redriven' AND d.reprocessed_at IS NULL) OR (d.status = 'parked' AND d.error_class = $2))
   AND NOT EXISTS (SELECT 1 FROM dead_letters b
                    WHERE b.stage = d.stage AND b.flag_key IS NOT DISTINCT FROM d.flag_key
                      AND b.status = 'parked' AND b.error_class <> $2
                      AND (b.version IS NULL OR d.version IS NULL OR b.version <= d.version))
 ORDER BY d.flag_key, d.version NULLS FIRST, d.id
 LIMIT $3"""
_REPROCESSED = """
UPDATE dead_letters SET reprocessed_at = now(), status = 'redriven',
       resolved_at = CASE WHEN status = 'parked' THEN now() ELSE resolved_at END,
       resolved_by = CASE WHEN status = 'parked' THEN 'system' ELSE resolved_by END,
       resolve_reason = CASE WHEN status = 'parked' THEN $3 ELSE resolve_reason END
 WHERE id = $1
   AND ((status = 'redriven' AND reprocessed_at IS NULL) OR (status = 'parked' AND error_class = $2))
RETURNING *"""
_STATS = """
SELECT stage, error_class, count(*) AS n, extract(epoch FROM now() - min(first_failed_at))::float8 AS age
  FROM dead_letters WHERE status = 'parked' GROUP BY stage, error_class"""
_BLOCKED_COUNTS = f"""
SELECT stage, count(DISTINCT flag_key) AS n FROM dead_letters
 WHERE flag_key IS NOT NULL AND {_BLOCKING} GROUP BY stage"""


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Driver errors the database may recover from become :class:`StoreUnavailable` (503)."""
    try:
        yield
    except FlagstreamError:
        raise
    except Exception as e:
        if is_retriable(e):
            raise StoreUnavailable(f"dead letters: {operation} failed: {e}") from e
        raise


def _to_letter(row: Mapping[str, Any]) -> DeadLetter:
    kafka = None
    if row["kafka_topic"] is not None:
        kafka = KafkaCoordinates(row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])
    return DeadLetter(
        id=row["id"],
        stage=row["stage"],
        flag_key=row["flag_key"],
        version=row["version"],
        event_id=row["event_id"],
        event_body=row["event_body"],
        raw_record=row["raw_record"],
        error_class=row["error_class"],
        error_message=row["error_message"],
        attempts=row["attempts"],
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
        kafka=kafka,
        status=row["status"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        resolve_reason=row["resolve_reason"],
        reprocessed_at=row["reprocessed_at"],
    )


def _where(flt: DeadLetterFilter, after_id: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    conditions: tuple[tuple[str, Any], ...] = (
        ("status = ${}", flt.status),
        ("stage = ${}", flt.stage),
        ("error_class = ${}", flt.error_class),
        ("flag_key = ${}", flt.flag_key),
        ("first_failed_at <= now() - ${}::interval", flt.min_age),
        ("id > ${}", after_id),
    )
    for template, value in conditions:
        if value is not None:
            params.append(value)
            clauses.append(template.format(len(params)))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class DeadLetterStore:
    """The dead-letter queue on an asyncpg pool. Unavailable database: :class:`StoreUnavailable`."""

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[tuple[DeadLetterStore, asyncpg.Connection]]:
        """One Postgres transaction: a store bound to it, and its connection for the other writes
        that must commit or roll back with the letters' changes (an operator action's event)."""
        if isinstance(self._pool, asyncpg.Connection):
            async with self._pool.transaction():
                yield self, self._pool
            return
        with _translated("transaction"):
            conn = await self._pool.acquire()
        try:
            async with conn.transaction():
                yield DeadLetterStore(conn), conn
        finally:
            await self._pool.release(conn)

    async def park(self, letter: NewDeadLetter) -> DeadLetter:
        """Park ``letter``; the same thing parked again at the same stage adds its attempts."""
        if letter.attempts < 1:
            raise ValueError("a dead letter has at least one attempt")
        topic, partition, offset = (
            (None, None, None)
            if letter.kafka is None
            else (letter.kafka.topic, letter.kafka.partition, letter.kafka.offset)
        )
        with _translated("park"):
            row = await self._pool.fetchrow(
                _PARK,
                letter.stage,
                letter.dedup_key(),
                letter.flag_key,
                letter.version,
                letter.event_id,
                letter.event_body,
                letter.raw_record,
                letter.error_class,
                letter.error_message,
                letter.attempts,
                letter.failed_at,
                topic,
                partition,
                offset,
                WAITING,
            )
        if row["inserted"]:
            _record_parked(letter.stage, letter.error_class)
        return _to_letter(row)

    async def get(self, letter_id: int) -> DeadLetter:
        with _translated("get"):
            row = await self._pool.fetchrow("SELECT * FROM dead_letters WHERE id = $1", letter_id)
        if row is None:
            raise DeadLetterNotFound(f"no dead letter {letter_id}")
        return _to_letter(row)

    async def mark_redriven(self, letter_id: int, by: str, reason: str | None = None) -> DeadLetter:
        """Resolve a parked letter as redriven (the stage will process the event again)."""
        return await self._resolve(letter_id, "redriven", by, reason)

    async def mark_purged(self, letter_id: int, by: str, reason: str) -> DeadLetter:
        """Resolve a parked letter as purged: the stage skips the event for good."""
        if not reason.strip():
            raise ValueError("purging a dead letter needs a reason")
        return await self._resolve(letter_id, "purged", by, reason)

    async def mark_redriven_matching(
        self, flt: DeadLetterFilter, by: str, reason: str | None = None, *, limit: int = MAX_PAGE
    ) -> builtins.list[DeadLetter]:
        """Redrive every parked letter matching ``flt`` (up to ``limit``), oldest first."""
        parked = DeadLetterFilter(flt.stage, flt.error_class, flt.flag_key, flt.min_age, "parked")
        where, params = _where(parked, None)
        sql = (
            f"UPDATE dead_letters SET status = 'redriven', resolved_at = now(), "
            f"resolved_by = ${len(params) + 1}, resolve_reason = ${len(params) + 2} "
            f"WHERE id IN (SELECT id FROM dead_letters{where} ORDER BY id LIMIT ${len(params) + 3} "
            f"FOR UPDATE SKIP LOCKED) RETURNING *"
        )
        with _translated("redrive"):
            rows = await self._pool.fetch(sql, *params, by, reason, min(limit, MAX_PAGE))
        return sorted((_to_letter(r) for r in rows), key=lambda letter: letter.id)

    async def blocked_flags(self, stage: Stage) -> set[str]:
        """Flags whose later events must wait at ``stage``: they have a parked letter (blocker or
        waiting) or a redriven one the stage has not processed again yet."""
        with _translated("blocked_flags"):
            rows = await self._pool.fetch(_BLOCKED, stage)
        return {r["flag_key"] for r in rows}

    async def blockers(self, stage: Stage) -> Blockers:
        """Per flag blocked at ``stage``, the lowest version that waits (the ordering rule)."""
        with _translated("blockers"):
            rows = await self._pool.fetch(_FLOORS, stage)
        return Blockers({r["flag_key"]: r["floor"] for r in rows})

    async def releasable(self, stage: Stage, *, limit: int = 100) -> builtins.list[DeadLetter]:
        """What ``stage`` must process again, in order: redriven letters not yet reprocessed and
        waiting letters, of flags that no longer have a blocker — by flag, then version."""
        with _translated("releasable"):
            rows = await self._pool.fetch(_RELEASABLE, stage, WAITING, min(limit, MAX_PAGE))
        return [_to_letter(r) for r in rows]

    async def mark_reprocessed(self, letter_id: int) -> DeadLetter:
        """The stage processed a released letter successfully (a waiting one becomes redriven by
        ``system``). Its flag unblocks when nothing else of it is parked or pending."""
        reason = "released: nothing blocks its flag any more"
        with _translated("mark_reprocessed"):
            row = await self._pool.fetchrow(_REPROCESSED, letter_id, WAITING, reason)
        if row is None:
            current = await self.get(letter_id)
            raise DeadLetterResolved(
                f"dead letter {letter_id} ({current.status}) is not waiting to be reprocessed"
            )
        return _to_letter(row)

    async def stats(self) -> DeadLetterStats:
        with _translated("stats"):
            rows = await self._pool.fetch(_STATS)
            blocked = await self._pool.fetch(_BLOCKED_COUNTS)
        stats = DeadLetterStats(blocked_flags={r["stage"]: r["n"] for r in blocked})
        for r in rows:
            stats.counts.setdefault(r["stage"], {})[r["error_class"]] = r["n"]
            oldest = stats.oldest_age_seconds.get(r["stage"], 0.0)
            stats.oldest_age_seconds[r["stage"]] = max(oldest, max(r["age"], 0.0))
        return stats

    async def list(
        self, flt: DeadLetterFilter | None = None, *, after_id: int | None = None, limit: int = 50
    ) -> DeadLetterPage:
        """A page of letters matching ``flt`` (default: parked), in id order, after ``after_id``."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be within 1..{MAX_PAGE}")
        where, params = _where(flt or DeadLetterFilter(), after_id)
        sql = f"SELECT * FROM dead_letters{where} ORDER BY id LIMIT ${len(params) + 1}"
        with _translated("list"):
            rows = await self._pool.fetch(sql, *params, limit + 1)
        items = [_to_letter(r) for r in rows[:limit]]
        return DeadLetterPage(items, items[-1].id if len(rows) > limit else None)

    async def _resolve(
        self, letter_id: int, status: DeadLetterStatus, by: str, reason: str | None
    ) -> DeadLetter:
        with _translated(status):
            row = await self._pool.fetchrow(_RESOLVE, letter_id, status, by, reason)
        if row is None:
            current = await self.get(letter_id)  # raises DeadLetterNotFound
            raise DeadLetterResolved(f"dead letter {letter_id} is already {current.status}")
        return _to_letter(row)


def _record_parked(stage: str, error_class: str) -> None:
    from monitoring import metrics

    metrics.record_dead_letter_parked(stage, error_class)
