"""API keys: ``fs_<43 url-safe chars>`` secrets, stored only as their SHA-256 (hex).

A key id (``key_<16 hex>``) names a key in listings and revocations; the secret is shown once,
at creation. Lookup is by the hash of the presented secret (unique index), so authentication is
one indexed query and a wrong secret reveals nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import asyncpg
import structlog

from events.errors import StoreUnavailable
from events.store.db import CONNECTION_ERRORS

__all__ = [
    "KEY_NOTICE_CHANNEL",
    "SECRET_PREFIX",
    "ApiKey",
    "ApiKeyStore",
    "Principal",
    "Role",
    "hash_secret",
    "looks_like_secret",
    "notify_revoked",
]

log = structlog.get_logger("events.store.keys")

SECRET_PREFIX = "fs_"
KEY_NOTICE_CHANNEL: Final = "flagstream_api_keys"  # NOTIFY payload: a revoked key's id
_SECRET_SHAPE = re.compile(r"^fs_[A-Za-z0-9_-]{43}$")


class Role(StrEnum):
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    OPS = "ops"
    ALERTS = "alerts"  # alert sources (Alertmanager webhooks): may only post metric alerts
    EVALUATOR = "evaluator"  # applications (OFREP, SDKs): may only evaluate


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's principal name, its role and which key it used."""

    name: str
    role: Role
    key_id: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    principal: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None  # set by a rotation: the end of the old secret's grace period

    @property
    def active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > datetime.now(UTC)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_secret(secret: str) -> bool:
    """Whether a presented string has the shape of one of our secrets (cheap pre-check)."""
    return bool(_SECRET_SHAPE.match(secret))


class ApiKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, principal: str, role: Role | str) -> tuple[str, str]:
        """A new key for ``principal``; returns ``(key_id, secret)`` — the secret is never stored."""
        if not principal.strip():
            raise ValueError("a key needs a principal name")
        checked_role = Role(role)
        key_id = "key_" + secrets.token_hex(8)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        await self._execute(
            "INSERT INTO api_keys (id, principal, role, key_hash) VALUES ($1, $2, $3, $4)",
            key_id,
            principal,
            checked_role.value,
            hash_secret(secret),
        )
        return key_id, secret

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal of an active key; ``None`` when the secret is malformed, unknown, revoked or
        past its expiry (the end of a rotation's grace period)."""
        if not looks_like_secret(secret):
            return None
        try:
            row = await self._pool.fetchrow(
                "SELECT id, principal, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > now())",
                hash_secret(secret),
            )
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"cannot check API key, Postgres unreachable: {e}") from e
        return None if row is None else Principal(row["principal"], Role(row["role"]), row["id"])

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key and send the revocation notice (as the API does); False when no active key
        has that id. The notice follows the commit (see :func:`notify_revoked`)."""
        status = await self._execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        if not status.endswith(" 1"):
            return False
        await notify_revoked(self._pool, key_id)
        return True

    async def list(self) -> list[ApiKey]:
        try:
            rows = await self._pool.fetch(
                "SELECT id, principal, role, created_at, revoked_at, expires_at FROM api_keys"
                " ORDER BY created_at, id"
            )
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"cannot list API keys, Postgres unreachable: {e}") from e
        return [_key_of(r) for r in rows]

    async def _execute(self, query: str, *args: object) -> str:
        try:
            return str(await self._pool.execute(query, *args))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e


def _key_of(r: asyncpg.Record) -> ApiKey:
    return ApiKey(r["id"], r["principal"], Role(r["role"]), r["created_at"], r["revoked_at"], r["expires_at"])


async def notify_revoked(pool: asyncpg.Pool, key_id: str) -> None:
    """``NOTIFY`` every API process that ``key_id`` is revoked. Call it after the revocation has
    committed: a listener then drops the key and its next look-up sees the revocation. Best effort
    (logged): the auth cache's TTL bounds a lost notice."""
    try:
        await pool.execute("SELECT pg_notify($1, $2)", KEY_NOTICE_CHANNEL, key_id)
    except CONNECTION_ERRORS as e:
        log.warning("keys.notice_failed", key_id=key_id, error_class=type(e).__name__)
