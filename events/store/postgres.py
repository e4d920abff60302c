"""The Postgres event store: append-only ``events`` table, optimistic concurrency per stream,
idempotency records in the same transaction, and the outbox the relay reads.

Why the relay reads by ``(txid, seq)`` below the xid horizon, and not simply "seq above my last"
------------------------------------------------------------------------------------------------
``seq`` values are handed out when a row is inserted, not when it commits. A transaction that
took seq 5 and commits late becomes visible *after* seq 6 did; a reader that had already moved
past 6 would skip 5 for ever. The safe horizon closes that gap: ``pg_snapshot_xmin(
pg_current_snapshot())`` is the oldest transaction id still running in the cluster, so every row
whose ``txid`` is below it belongs to a transaction that has finished — committed (visible) or
aborted (never visible). The set of rows below the horizon can therefore never grow behind the
reader's back: no running or future transaction can get an xid below it.

Filtering by the horizon is not enough on its own when the cursor is ``seq``: a transaction
can get its xid *before* another takes a smaller seq (xid 100 takes seq 6, xid 101 takes seq 5;
100 commits, 101 is still running — seq 6 is below the horizon, seq 5 is not yet). So the cursor
is ``(txid, seq)`` and rows are read in that order: everything below the horizon with a larger
``(txid, seq)`` than the checkpoint, which can never again gain a row smaller than the
checkpoint. Per stream this order *is* version order: version n+1 is only inserted after the
appending transaction has seen version n committed, so its xid (assigned at its first write,
which comes after that read) is larger; several events of one append share an xid and are in
seq order. The cost: an open transaction anywhere in the cluster holds the relay back until
it ends (keep transactions short). Appends ``NOTIFY`` :data:`events.store.db.EVENTS_CHANNEL` on commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import structlog

from core.envelope import Event
from events.errors import DuplicateIdempotencyKey, StoreUnavailable, VersionConflict
from events.ports import EventStore, Outbox, RelayPosition, StoredEvent, plan_append
from events.store.db import CONNECTION_ERRORS, EVENTS_CHANNEL
from events.store.idempotency import IDEMPOTENCY_TTL, IdempotencyRecord, IdempotencyWrite

__all__ = ["EventStore", "Outbox", "PostgresEventStore", "RelayPosition", "StoredEvent", "append_on"]

log = structlog.get_logger(__name__)

_INSERT = """
INSERT INTO events (event_id, flag_key, version, type, environment, occurred_at, actor, hash, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""
_CURRENT_AND_NOTIFY = "SELECT coalesce(max(version), 0), pg_notify($2, '') FROM events WHERE flag_key = $1"
_APPEND_ONE_STREAM = """
WITH current AS (SELECT coalesce(max(version), 0) AS v FROM events WHERE flag_key = $1),
inserted AS (
    INSERT INTO events (event_id, flag_key, version, type, environment, occurred_at, actor, hash, body)
    SELECT e.event_id, $1, e.version, e.type, e.environment, e.occurred_at, e.actor, e.hash, e.body
      FROM current,
           unnest($3::uuid[], $4::integer[], $5::text[], $6::text[], $7::timestamptz[], $8::text[],
                  $9::text[], $10::text[])
           WITH ORDINALITY AS e(event_id, version, type, environment, occurred_at, actor, hash, body, n)
     WHERE current.v = $2 - 1
     ORDER BY e.n
    RETURNING 1)
SELECT v, CASE WHEN v = $2 - 1 THEN pg_notify($11, '') END FROM current"""
"""One stream's events in one statement (one round trip, its own transaction): the version check and
the inserts see one snapshot, nothing is inserted when the stream moved on, and a concurrent append
of the same version still meets the unique ``(flag_key, version)``. Each event's xid is assigned by
its insert, after the snapshot that saw the previous version committed: the relay's order holds."""
_UPSERT_IDEMPOTENCY = """
INSERT INTO idempotency_keys AS k (principal, key, request_hash, status, response)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (principal, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
       response = EXCLUDED.response, created_at = now()
 WHERE k.created_at <= now() - $6::interval
RETURNING 1"""
_READ_COMMITTED = """
SELECT seq, txid::text AS txid_text, body FROM events
 WHERE (txid, seq) > ($1::text::xid8, $2::bigint)
   AND txid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.txid, events.seq
 LIMIT $3"""
_SAVE_CHECKPOINT = """
INSERT INTO relay_checkpoints AS c (name, last_seq, last_txid) VALUES ($1, $2, $3::text::xid8)
ON CONFLICT (name) DO UPDATE
   SET last_seq = EXCLUDED.last_seq, last_txid = EXCLUDED.last_txid, updated_at = now()
 WHERE (c.last_txid, c.last_seq) < (EXCLUDED.last_txid, EXCLUDED.last_seq)"""


def _row_of(event: Event) -> tuple[object, ...]:
    return (
        event.event_id,
        event.flag_key,
        event.version,
        event.type,
        event.environment,
        event.occurred_at,
        event.actor,
        event.hash,
        event.to_json(),
    )


async def _insert_checked(conn: asyncpg.Connection, firsts: dict[str, int], events: Sequence[Event]) -> None:
    for stream, first in firsts.items():
        current = await conn.fetchval(_CURRENT_AND_NOTIFY, stream, EVENTS_CHANNEL)
        if current != first - 1:
            raise VersionConflict(expected_version=first - 1, current_version=current, stream=stream)
    if len(events) == 1:
        await conn.execute(_INSERT, *_row_of(events[0]))
    else:
        await conn.executemany(_INSERT, [_row_of(e) for e in events])


async def append_on(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Append ``events`` within the caller's transaction on ``conn`` (a savepoint: a conflict undoes
    only this append), so they commit or roll back with whatever else the caller does there — an
    operator's action and its audit event, for one. ``VersionConflict`` when a stream moved on."""
    firsts = plan_append(events)
    if not firsts:
        raise ValueError("append needs at least one event")
    try:
        async with conn.transaction():
            await _insert_checked(conn, firsts, events)
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name != "events_flag_key_version_key":
            raise ValueError(f"an event with this id is already stored: {e.detail}") from e
        stream, first = next(iter(firsts.items()))
        raise VersionConflict(expected_version=first - 1, current_version=first, stream=stream) from e
    except CONNECTION_ERRORS as e:
        raise StoreUnavailable(f"append failed, Postgres unreachable: {e}") from e


class PostgresEventStore:
    """:class:`EventStore` and :class:`Outbox` on an asyncpg pool (owned by the caller)."""

    def __init__(self, pool: asyncpg.Pool, *, idempotency_ttl: timedelta = IDEMPOTENCY_TTL) -> None:
        self._pool = pool
        self._ttl = idempotency_ttl

    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]:
        rows = await self._fetch(
            "SELECT body FROM events WHERE flag_key = $1 AND ($2::integer IS NULL OR version <= $2)"
            " ORDER BY version",
            stream_key,
            to_version,
        )
        return [Event.from_json(r["body"]) for r in rows]

    async def current_version(self, stream_key: str) -> int:
        rows = await self._fetch(
            "SELECT coalesce(max(version), 0) AS v FROM events WHERE flag_key = $1", stream_key
        )
        return int(rows[0]["v"])

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        """Append in one transaction; ``VersionConflict`` when a stream moved on.

        Each stream's first version must be its current version + 1 (checked inside the
        transaction; a concurrent append of the same version is caught by the unique
        ``(flag_key, version)``). The idempotency record, if any, is written in the same
        transaction; ``DuplicateIdempotencyKey`` when a live record with that key exists.
        """
        firsts = plan_append(events)
        if not firsts:
            raise ValueError("append needs at least one event")
        try:
            if idempotency is None and len(firsts) == 1:
                await self._append_one_stream(events[0].flag_key, events[0].version, events)
                return
            async with self._pool.acquire() as conn, conn.transaction():
                await _insert_checked(conn, firsts, events)
                if idempotency is not None:
                    await self._write_idempotency(conn, idempotency)
        except asyncpg.UniqueViolationError as e:
            if e.constraint_name != "events_flag_key_version_key":
                raise ValueError(f"an event with this id is already stored: {e.detail}") from e
            raise await self._conflict_of(firsts) from e
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"append failed, Postgres unreachable: {e}") from e

    async def _append_one_stream(self, stream: str, first: int, events: Sequence[Event]) -> None:
        rows = [_row_of(e) for e in events]
        columns = [[row[i] for row in rows] for i in (0, 2, 3, 4, 5, 6, 7, 8)]
        current = await self._pool.fetchval(_APPEND_ONE_STREAM, stream, first, *columns, EVENTS_CHANNEL)
        if current != first - 1:
            raise VersionConflict(expected_version=first - 1, current_version=current, stream=stream)

    async def remember_answer(self, idempotency: IdempotencyWrite) -> None:
        """The answer of a command that appended nothing, kept under its key (no event written)."""
        try:
            async with self._pool.acquire() as conn:
                await self._write_idempotency(conn, idempotency)
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"idempotency record not written, Postgres unreachable: {e}") from e

    async def _write_idempotency(self, conn: asyncpg.Connection, write: IdempotencyWrite) -> None:
        inserted = await conn.fetchval(
            _UPSERT_IDEMPOTENCY,
            write.principal,
            write.key,
            write.request_hash,
            write.status,
            json.dumps(write.response, separators=(",", ":")),
            self._ttl,
        )
        if inserted is None:
            raise DuplicateIdempotencyKey(write.key)

    async def _conflict_of(self, firsts: dict[str, int]) -> VersionConflict:
        for stream, first in firsts.items():
            current = await self.current_version(stream)
            if current != first - 1:
                return VersionConflict(expected_version=first - 1, current_version=current, stream=stream)
        stream, first = next(iter(firsts.items()))
        return VersionConflict(expected_version=first - 1, current_version=first, stream=stream)

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        rows = await self._fetch(
            "SELECT request_hash, status, response::text AS response, created_at FROM idempotency_keys"
            " WHERE principal = $1 AND key = $2 AND created_at > now() - $3::interval",
            principal,
            key,
            self._ttl,
        )
        if not rows:
            return None
        row = rows[0]
        return IdempotencyRecord(
            principal, key, row["request_hash"], row["status"], json.loads(row["response"]), row["created_at"]
        )

    async def read_committed_after(self, position: RelayPosition, limit: int) -> list[StoredEvent]:
        """Committed events after ``position`` in ``(txid, seq)`` order, below the xid horizon."""
        rows = await self._fetch(_READ_COMMITTED, str(position.txid), position.seq, limit)
        return [StoredEvent(r["seq"], int(r["txid_text"]), Event.from_json(r["body"])) for r in rows]

    async def load_checkpoint(self, name: str) -> RelayPosition:
        rows = await self._fetch(
            "SELECT last_txid::text AS txid, last_seq FROM relay_checkpoints WHERE name = $1", name
        )
        return RelayPosition(int(rows[0]["txid"]), rows[0]["last_seq"]) if rows else RelayPosition()

    async def save_checkpoint(self, name: str, position: RelayPosition) -> None:
        """Move the checkpoint forward (never backwards)."""
        try:
            await self._pool.execute(_SAVE_CHECKPOINT, name, position.seq, str(position.txid))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"checkpoint not saved, Postgres unreachable: {e}") from e

    async def reset_checkpoint(self, name: str) -> None:
        """Move the checkpoint back to the beginning (the log lost what was published)."""
        try:
            await self._pool.execute(
                "UPDATE relay_checkpoints SET last_seq = 0, last_txid = '0'::xid8, updated_at = now()"
                " WHERE name = $1",
                name,
            )
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"checkpoint not reset, Postgres unreachable: {e}") from e

    async def backlog(self, position: RelayPosition) -> tuple[int, datetime | None]:
        rows = await self._fetch(
            "SELECT count(*) AS n, min(occurred_at) AS oldest FROM events"
            " WHERE (txid, seq) > ($1::text::xid8, $2::bigint)",
            str(position.txid),
            position.seq,
        )
        return int(rows[0]["n"]), rows[0]["oldest"]

    async def stream_keys(self) -> list[str]:
        rows = await self._fetch("SELECT DISTINCT flag_key FROM events ORDER BY flag_key")
        return [r["flag_key"] for r in rows]

    async def count(self) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM events")
        return int(rows[0]["n"])

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(query, *args))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e
