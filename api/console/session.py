"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the session itself stays server-side.

A session maps to the same :class:`~api.auth.Principal` the signing-in API key authenticates as, so the
console's roles are exactly the API's. Sessions are kept in Redis (``<namespace>:console:session:<id>``)
so that every API process (``flagstream run`` starts several) knows them; each expires after
``ttl_seconds`` without use (the expiry is renewed on every request) and is deleted on sign-out.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.auth import Principal
from projections.errors import ReadModelUnavailable

__all__ = ["COOKIE_NAME", "Session", "SessionStore"]

COOKIE_NAME = "fs_console"


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
        body = {"name": principal.name, "role": principal.role, "key_id": principal.key_id,
                "csrf": session.csrf_token}
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
