"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the session itself stays server-side.

A session maps to the same :class:`~api.auth.Principal` the signing-in API key authenticates as, so the
console's roles are exactly the API's. Sessions are kept in Redis (``<namespace>:console:session:<id>``)
so that every API process (``flagstream run`` starts several) knows them; each expires after
``ttl_seconds`` without use (the expiry is renewed on every request) and is deleted on sign-out.

A *flash* is something a POST leaves for the page its redirect shows, read exactly once
(POST/redirect/GET): ``put_flash`` stores it beside the session for ``FLASH_SECONDS``, ``take_flash``
reads and deletes it in one command (GETDEL), so a reload shows it no more.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.auth import Principal
from projections.errors import ReadModelUnavailable

__all__ = ["COOKIE_NAME", "FLASH_SECONDS", "Session", "SessionStore"]

COOKIE_NAME = "fs_console"
FLASH_SECONDS = 120  # a flash not shown within this (the redirect was not followed) is dropped


@dataclass(slots=True)
class Session:
    id: str
    principal: Principal
    csrf_token: str


class SessionStore:
    """Sessions keyed by a 256-bit random id, in Redis, expiring after a period without use."""

    def __init__(self, client: Redis, namespace: str, *, ttl_seconds: int = 8 * 3600) -> None:
        self._client = client
        self._prefix = f"{namespace}:console:session:"
        self._ttl = ttl_seconds

    async def create(self, principal: Principal) -> Session:
        session = Session(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32))
        body = {
            "name": principal.name,
            "role": principal.role,
            "key_id": principal.key_id,
            "csrf": session.csrf_token,
        }
        try:
            await self._client.set(self._prefix + session.id, json.dumps(body), ex=self._ttl)
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable storing a console session") from e
        return session

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        try:
            raw = await self._client.getex(self._prefix + session_id, ex=self._ttl)
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading a console session") from e
        if raw is None:
            return None
        body = json.loads(raw)
        return Session(session_id, Principal(body["name"], body["role"], body["key_id"]), body["csrf"])

    async def delete(self, session_id: str | None) -> None:
        if session_id:
            try:
                await self._client.delete(self._prefix + session_id)
            except (RedisError, OSError) as e:
                raise ReadModelUnavailable("redis unavailable deleting a console session") from e

    async def put_flash(self, session: Session, name: str, value: dict[str, Any]) -> None:
        """Leave ``value`` for the next page of this session that takes ``name`` (once)."""
        try:
            await self._client.set(self._flash_key(session, name), json.dumps(value), ex=FLASH_SECONDS)
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable storing a console message") from e

    async def take_flash(self, session: Session, name: str) -> dict[str, Any] | None:
        """The value left under ``name``, deleted as it is read; ``None`` when there is none (any more)."""
        try:
            raw = await self._client.getdel(self._flash_key(session, name))
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading a console message") from e
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    def _flash_key(self, session: Session, name: str) -> str:
        return f"{self._prefix}{session.id}:flash:{name}"
