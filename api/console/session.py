"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the session itself stays server-side.

A session maps to the same :class:`~api.auth.Principal` the signing-in API key authenticates as, so the
console's roles are exactly the API's. Sessions live in process memory (one API process serves the
console), expire after ``ttl_seconds`` of inactivity and are forgotten on sign-out.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.auth import Principal

__all__ = ["COOKIE_NAME", "Session", "SessionStore"]

COOKIE_NAME = "fs_console"
_MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    id: str
    principal: Principal
    csrf_token: str
    expires_at: float


class SessionStore:
    """Sessions keyed by a 256-bit random id, expiring after a period without use."""

    def __init__(self, *, ttl_seconds: float = 8 * 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, principal: Principal) -> Session:
        now = self._clock()
        if len(self._sessions) >= _MAX_SESSIONS:
            self._drop_expired(now)
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + self._ttl,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        now = self._clock()
        if session is None or session.expires_at <= now:
            self._sessions.pop(session_id, None)
            return None
        session.expires_at = now + self._ttl
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
