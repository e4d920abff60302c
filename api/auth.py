"""API-key authentication and role-based authorisation.

``Authorization: Bearer <key>``. Missing, empty, ``Bearer null``/``undefined``, malformed, unknown
or revoked keys are ``401`` (with ``WWW-Authenticate``); a valid key whose role may not do the
thing is ``403``. Keys are looked up by their SHA-256 in Postgres; a short positive cache keeps the
evaluation hot path off the database (a revocation takes effect within ``cache_ttl`` seconds).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

import structlog

from api.errors import ApiError

__all__ = [
    "ROLE_CHECKS",
    "AuthCache",
    "Identified",
    "Permission",
    "Principal",
    "PrincipalLookup",
    "authorise",
    "mark_role_check",
    "parse_bearer",
    "roles_with",
]

log = structlog.get_logger("api.auth")

T = TypeVar("T")

# Our keys: "fs_" + urlsafe base64. Anything else is malformed before we touch the database.
_KEY_SHAPE = re.compile(r"^fs_[A-Za-z0-9_-]{16,128}$")
_PLACEHOLDERS = {"null", "undefined", "none", "nil", "false", "true", "bearer", "0", "[object object]"}


class Permission(StrEnum):
    WRITE_FLAGS = "write_flags"
    READ_FLAGS = "read_flags"
    EVALUATE = "evaluate"
    READ_AUDIT = "read_audit"
    OPERATE = "operate"  # dead letters, redrive, purge, manual rollback of infrastructure
    INGEST_ALERTS = "ingest_alerts"
    ROLLBACK = "rollback"
    MANAGE_KEYS = "manage_keys"  # create, list, revoke, rotate API keys (admin only)


_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "writer": frozenset(
        {Permission.WRITE_FLAGS, Permission.READ_FLAGS, Permission.EVALUATE, Permission.ROLLBACK}
    ),
    "reader": frozenset({Permission.READ_FLAGS, Permission.EVALUATE, Permission.READ_AUDIT}),
    "ops": frozenset({Permission.READ_FLAGS, Permission.EVALUATE, Permission.OPERATE, Permission.ROLLBACK}),
    "alerts": frozenset({Permission.INGEST_ALERTS}),
    "evaluator": frozenset({Permission.EVALUATE}),  # applications: evaluate (OFREP, /evaluate), nothing else
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's principal name (the actor of any event it causes) and role."""

    name: str
    role: str
    key_id: str

    def can(self, permission: Permission) -> bool:
        return permission in _ROLE_PERMISSIONS.get(self.role, frozenset())


ROLE_CHECKS: dict[Callable[..., object], frozenset[str]] = {}
"""Every FastAPI dependency that authorises, with the roles it lets through (``api.deps.require``
registers its checks; any other authorising dependency must too): the role-matrix test reads a
route's allowed roles here (the intersection over its dependency tree)."""


def mark_role_check(
    check: Callable[..., T], permission: Permission | None = None, *, roles: Iterable[str] = ()
) -> Callable[..., T]:
    """Register ``check`` as an authorising dependency: it lets through the roles holding ``permission``
    (or exactly ``roles``). An inspectable marker, not a behaviour: the check still does the checking."""
    ROLE_CHECKS[check] = roles_with(permission) if permission is not None else frozenset(roles)
    return check


def roles_with(permission: Permission) -> frozenset[str]:
    """The roles whose keys hold ``permission``."""
    return frozenset(role for role, granted in _ROLE_PERMISSIONS.items() if permission in granted)


class PrincipalLookup(Protocol):
    async def __call__(self, secret: str) -> Principal | None: ...


def parse_bearer(header: str | None) -> str:
    """The key from an ``Authorization`` header, or a 401 saying precisely what is wrong."""
    if header is None or not header.strip():
        raise _unauthenticated("missing_credentials", "an Authorization: Bearer <api key> header is required")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _unauthenticated(
            "malformed_credentials", "use the Bearer scheme: Authorization: Bearer <api key>"
        )
    value = value.strip()
    if not value or value.lower() in _PLACEHOLDERS:
        raise _unauthenticated("missing_credentials", "the bearer token is empty or a placeholder")
    if not _KEY_SHAPE.match(value):
        raise _unauthenticated("malformed_credentials", "the bearer token is not a Flagstream API key")
    return value


def _unauthenticated(reason: str, message: str) -> ApiError:
    from monitoring import metrics

    metrics.record_auth_failure(reason)
    error = ApiError(
        401, "unauthenticated", message, details=[{"path": "headers.authorization", "message": reason}]
    )
    return error


def authorise(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        from monitoring import metrics

        metrics.record_auth_failure("forbidden")
        raise ApiError(
            403,
            "forbidden",
            f"role {principal.role!r} may not {permission.value.replace('_', ' ')}",
        )


@dataclass(frozen=True, slots=True)
class Identified:
    """What :meth:`AuthCache.identify` answered for one request's ``Authorization`` header."""

    header: str
    principal: Principal | None


class AuthCache:
    """Positive-only TTL cache in front of the key store; unknown keys are always re-checked."""

    def __init__(
        self,
        lookup: PrincipalLookup,
        *,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        # last successful authentication of each key, kept when the cache is cleared wholesale (only an
        # explicit revocation drops it): read by last_known() while the key store cannot answer
        self._last_seen: dict[str, Principal] = {}

    async def authenticate(self, header: str | None, *, identified: Identified | None = None) -> Principal:
        """The principal of the key in ``header``, or a 401 saying why. ``identified`` is what
        :meth:`identify` already answered for this request's header (the rate limiter asked first): an
        unknown key is then refused without a second trip to the key store."""
        secret = parse_bearer(header)
        now = self._clock()
        cached = self._entries.get(secret)
        if cached is not None and cached[0] > now:
            return cached[1]
        if identified is not None and identified.header == header:
            principal = identified.principal
        else:
            principal = await self._lookup(secret)
        if principal is None:
            self._entries.pop(secret, None)
            raise _unauthenticated("unknown_or_revoked_key", "the API key is unknown or revoked")
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[secret] = (now + self._ttl, principal)
        if len(self._last_seen) >= self._max:
            self._last_seen.clear()
        self._last_seen[secret] = principal
        return principal

    def cached(self, header: str | None) -> Principal | None:
        """The principal of a ``Bearer`` key authenticated within ``cache_ttl``, else None — a dict
        lookup, no database, no failure recorded (the evaluation fast lane; a miss takes the full path)."""
        if header is None or header[:7].lower() != "bearer ":
            return None
        cached = self._entries.get(header[7:].strip())
        if cached is None or cached[0] <= self._clock():
            return None
        return cached[1]

    async def identify(self, header: str | None) -> Principal | None:
        """The principal of a well-formed, known key, or None — never raises for a bad header and
        records no auth failure (the rate limiter's look at who is calling; the route still authenticates)."""
        value = (header or "").strip()
        scheme, _, secret = value.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not _KEY_SHAPE.match(secret):
            return None
        cached = self._entries.get(secret)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        principal = await self._lookup(secret)
        if principal is not None:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[secret] = (self._clock() + self._ttl, principal)
            if len(self._last_seen) >= self._max:
                self._last_seen.clear()
            self._last_seen[secret] = principal
        return principal

    def last_known(self, header: str | None) -> Principal | None:
        """The principal this key had when last authenticated, even if that entry expired (for a read-only
        answer such as /readyz details while the key store cannot answer); None if never seen."""
        _, _, secret = (header or "").strip().partition(" ")
        cached = self._entries.get(secret.strip())
        return cached[1] if cached is not None else self._last_seen.get(secret.strip())

    def forget_key(self, key_id: str | None) -> None:
        """Drop every cached secret of key ``key_id`` (a revocation notice); ``None`` drops all."""
        if key_id is None:
            self._entries.clear()
            return
        for secret in [s for s, (_, p) in self._entries.items() if p.key_id == key_id]:
            self._entries.pop(secret, None)
        for secret in [s for s, p in self._last_seen.items() if p.key_id == key_id]:
            self._last_seen.pop(secret, None)

    def forget(self, secrets: Iterable[str] = ()) -> None:
        for secret in secrets:
            self._entries.pop(secret, None)
        if not secrets:
            self._entries.clear()
