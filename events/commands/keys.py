"""API keys over HTTP: create, list, revoke, rotate — each change an audit event in ``ops:api-keys``.

One change is one Postgres transaction: the ``api_keys`` row changes, the event (actor = the
authenticated principal, never the secret) is appended to ``ops:api-keys`` through the outbox,
and a revocation sends ``NOTIFY flagstream_api_keys, '<key id>'`` *after* its commit, so every
API process listening (:mod:`events.store.key_notices`) drops that key from its auth cache at
once and its next look-up already sees the revocation (a NOTIFY inside the transaction could reach
a listener before the commit was visible to its other connections: a look-up racing it re-cached
the key for a whole TTL). The auth cache's TTL bounds the rest (a process whose listener was down,
or a process that died between the commit and the notice).
"""

from __future__ import annotations

import secrets as _secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog

from core.apikeys import API_KEYS_STREAM, ApiKeyCreatedPayload, ApiKeyRevokedPayload, ApiKeyRotatedPayload
from core.errors import FlagstreamError
from core.events import Payload
from events.deadletters.operations import OperationsJournal, PostgresStreamHead
from events.errors import StoreUnavailable
from events.ports import EventStore
from events.store.db import CONNECTION_ERRORS
from events.store.keys import KEY_NOTICE_CHANNEL, SECRET_PREFIX, ApiKey, Role, hash_secret, notify_revoked

__all__ = [
    "DEFAULT_ROTATION_GRACE",
    "KEY_NOTICE_CHANNEL",
    "MAX_ROTATION_GRACE",
    "CreatedKey",
    "KeyNotFound",
    "KeyService",
]

log = structlog.get_logger("events.commands.keys")

_COLUMNS = "id, principal, role, created_at, revoked_at, expires_at"
# A rotated key's old secret keeps working this long: a day covers a daily deploy or config push
# of every client that holds the secret, and bounds how long a leaked old secret is useful. A
# compromised key is rotated with a grace of 0 (revoked at once) or revoked.
DEFAULT_ROTATION_GRACE: Final = timedelta(hours=24)
MAX_ROTATION_GRACE: Final = timedelta(days=30)


class KeyNotFound(FlagstreamError):
    code = "key_not_found"
    http_status = 404


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once, never stored
    replaced: ApiKey | None = None  # after a rotation: the old key (its expires_at, or revoked_at)


class KeyService:
    def __init__(self, pool: asyncpg.Pool, store: EventStore, *, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._journal = OperationsJournal(store, PostgresStreamHead(pool), clock=clock, new_id=uuid.uuid4)

    async def create(self, principal: str, role: Role, *, actor: str, reason: str | None) -> CreatedKey:
        async with self._transaction() as conn:
            created = await _insert(conn, principal, role)
            await self._record(
                conn,
                ApiKeyCreatedPayload(key_id=created.key.id, principal=principal, role=role.value),
                actor,
                reason,
            )
        log.info("keys.created", key_id=created.key.id, role=role.value, actor=actor)
        return created

    async def revoke(self, key_id: str, *, actor: str, reason: str | None) -> ApiKey:
        """Revoke an active key; ``KeyNotFound`` when no active key has that id."""
        async with self._transaction() as conn:
            revoked = await _revoke(conn, key_id)
            await self._record(
                conn,
                ApiKeyRevokedPayload(key_id=key_id, principal=revoked.principal, role=revoked.role.value),
                actor,
                reason,
            )
        await notify_revoked(self._pool, key_id)
        log.info("keys.revoked", key_id=key_id, actor=actor)
        return revoked

    async def rotate(
        self, key_id: str, *, actor: str, reason: str | None, grace: timedelta = DEFAULT_ROTATION_GRACE
    ) -> CreatedKey:
        """A new key for the same principal and role. The old secret keeps working for ``grace``
        (then it is refused); a grace of 0 revokes it in the same transaction. A key already
        rotated (in its grace period) or revoked is ``KeyNotFound``."""
        if not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
            raise ValueError(f"grace must be between 0 and {MAX_ROTATION_GRACE}")
        async with self._transaction() as conn:
            if grace:
                old = await _expire(conn, key_id, grace)
            else:
                old = await _revoke(conn, key_id, rotating=True)
            created = await _insert(conn, old.principal, old.role)
            payload = ApiKeyRotatedPayload(
                key_id=key_id,
                new_key_id=created.key.id,
                principal=old.principal,
                role=old.role.value,
                grace_seconds=int(grace.total_seconds()),
                old_key_expires_at=old.expires_at if grace else old.revoked_at,
            )
            await self._record(conn, payload, actor, reason)
        if not grace:
            await notify_revoked(self._pool, key_id)
        log.info(
            "keys.rotated",
            key_id=key_id,
            new_key_id=created.key.id,
            grace_seconds=int(grace.total_seconds()),
            actor=actor,
        )
        return CreatedKey(created.key, created.secret, replaced=old)

    async def list(self) -> list[ApiKey]:
        try:
            rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"cannot list API keys, Postgres unreachable: {e}") from e
        return [_key_of(r) for r in rows]

    async def _record(
        self, conn: asyncpg.Connection, payload: Payload, actor: str, reason: str | None
    ) -> None:
        await self._journal.record(payload, actor=actor, reason=reason, stream=API_KEYS_STREAM, conn=conn)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._pool)


class _Transaction:
    """``async with``: a pooled connection in a transaction; driver errors become ``StoreUnavailable``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._tx: asyncpg.transaction.Transaction | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            self._conn = await self._pool.acquire()
            self._tx = self._conn.transaction()
            await self._tx.start()
        except CONNECTION_ERRORS as e:
            await self._release()
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e
        return self._conn

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        assert self._tx is not None
        try:
            if exc is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._conn is not None:
            await self._pool.release(self._conn)
            self._conn = None


async def _insert(conn: asyncpg.Connection, principal: str, role: Role) -> CreatedKey:
    key_id = "key_" + _secrets.token_hex(8)
    secret = SECRET_PREFIX + _secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        f"INSERT INTO api_keys (id, principal, role, key_hash) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
        key_id,
        principal,
        role.value,
        hash_secret(secret),
    )
    assert row is not None
    return CreatedKey(_key_of(row), secret)


async def _revoke(conn: asyncpg.Connection, key_id: str, *, rotating: bool = False) -> ApiKey:
    """Revoke an active key (one in a rotation's grace period too, unless ``rotating`` it again)."""
    again = " AND expires_at IS NULL" if rotating else ""
    row = await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL{again}"
        f" RETURNING {_COLUMNS}",
        key_id,
    )
    if row is None:
        raise KeyNotFound(
            f"no active API key {key_id!r}", details=[{"path": "id", "message": "unknown or revoked"}]
        )
    return _key_of(row)


async def _expire(conn: asyncpg.Connection, key_id: str, grace: timedelta) -> ApiKey:
    """Set the end of an active, not yet rotated key's validity to now + ``grace``."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET expires_at = now() + $2 WHERE id = $1 AND revoked_at IS NULL"
        f" AND expires_at IS NULL RETURNING {_COLUMNS}",
        key_id,
        grace,
    )
    if row is None:
        raise KeyNotFound(
            f"no active API key {key_id!r} that is not already rotated",
            details=[{"path": "id", "message": "unknown, revoked or already rotated"}],
        )
    return _key_of(row)


def _key_of(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        row["id"],
        row["principal"],
        Role(row["role"]),
        row["created_at"],
        row["revoked_at"],
        row["expires_at"],
    )
