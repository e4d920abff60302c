"""Rate limits: token buckets in Redis shared by every API process, a per-process bucket as fallback.

A request belongs to one *class* (``evaluation``: ``/api/v1/evaluate`` and OFREP; ``audit``: audit
reads and ``?as_of=``; ``commands``: everything else under ``/api/``). It is charged to one bucket:
its API key's (by the key's SHA-256, never the key itself) or, unauthenticated, its client
address's. The quota depends on the caller's role (``Settings.rate_limits``: ``{role: {class:
"quota/window_seconds"}}``, ``"*"`` the default of every role, ``"anonymous"`` the unauthenticated).

One Lua script refills and takes a token atomically, on Redis's clock, so every process shares the
bucket. If Redis does not answer, a bucket in this process takes over (for ``fallback_seconds``
before Redis is tried again) rather than refusing everyone. Answers follow the IETF draft
``draft-ietf-httpapi-ratelimit-headers`` (``RateLimit-Policy: "evaluation";q=100;w=1`` and
``RateLimit: "evaluation";r=42;t=0``), plus ``Retry-After`` on a ``429``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from monitoring import metrics
from runtime.settings import parse_rate

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "LocalBuckets",
    "Quota",
    "RateClass",
    "RateLimiter",
    "Verdict",
    "classify_request",
    "parse_quota",
]

log = structlog.get_logger("api.ratelimit")

RateClass = Literal["evaluation", "commands", "audit"]

# High enough that tests and benchmarks are never throttled by accident; tighten them per deployment.
DEFAULT_RATE_LIMITS: dict[str, dict[str, str]] = {
    "*": {"evaluation": "20000/1", "commands": "2000/1", "audit": "200/1"},
    "anonymous": {"evaluation": "2000/1", "commands": "200/1", "audit": "20/1"},
}

# KEYS[1] bucket; ARGV: capacity, refill tokens per second, ttl seconds, tokens wanted (a lease).
# Takes up to ARGV[4] whole tokens at once; answers {tokens taken (0 = refused), tokens left (floor),
# milliseconds until one token is back}.
_TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local taken = math.min(wanted, math.floor(tokens))
if taken < 0 then
  taken = 0
end
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
local wait_ms = 0
if tokens < 1 then
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
return {taken, math.floor(tokens), wait_ms}
"""


@dataclass(frozen=True, slots=True)
class Quota:
    """``quota`` requests per ``window`` seconds (a bucket of ``quota`` tokens refilled evenly)."""

    quota: int
    window: float

    @property
    def rate(self) -> float:
        return self.quota / self.window


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    rate_class: str
    quota: Quota
    remaining: int
    wait_seconds: float
    shared: bool  # False when the per-process fallback decided

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy`` and ``RateLimit`` (and ``Retry-After`` when refused)."""
        name = self.rate_class
        reset = math.ceil(self.wait_seconds) if self.remaining < 1 else 0
        out = [
            (b"ratelimit-policy", _policy_header(name, self.quota)),
            (b"ratelimit", _limit_header(name, max(self.remaining, 0), reset)),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(self.wait_seconds))).encode()))
        return out


@functools.lru_cache(maxsize=256)
def _policy_header(name: str, quota: Quota) -> bytes:
    """``RateLimit-Policy``: the same few values on every answer, formatted once."""
    return f'"{name}";q={quota.quota};w={_format_number(quota.window)}'.encode()


@functools.lru_cache(maxsize=4096)
def _limit_header(name: str, remaining: int, reset: int) -> bytes:
    """``RateLimit``: a lease hands out the same few remaining counts over and over."""
    return f'"{name}";r={remaining};t={reset}'.encode()


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_quota(text: str) -> Quota:
    """``"100/60"`` → 100 requests per 60 s (a bare ``"100"`` is per second); the grammar the settings
    check at start-up (:func:`runtime.settings.parse_rate`)."""
    return Quota(*parse_rate(text))


def classify_request(method: str, path: str, query: str) -> RateClass | None:
    """The class a request is charged to, or None when it is not limited (health, metrics, docs, UI)."""
    if path.startswith("/ofrep/"):
        return "evaluation"
    if not path.startswith("/api/"):
        return None
    if path.startswith("/api/v1/audit") or "as_of=" in query:
        return "audit"
    if path.startswith("/api/v1/evaluate"):
        return "evaluation"
    return "commands"


class LocalBuckets:
    """Per-process token buckets (the fallback while Redis is away), bounded in number (LRU)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = 10_000) -> None:
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, bucket: str, quota: Quota) -> tuple[bool, int, float]:
        now = self._clock()
        tokens, at = self._buckets.pop(bucket, (float(quota.quota), now))
        tokens = min(float(quota.quota), tokens + max(0.0, now - at) * quota.rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[bucket] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / quota.rate
        return allowed, math.floor(tokens), wait


@dataclass(slots=True)
class _Lease:
    """Tokens this process took from a shared bucket in one Redis call, spent without asking again."""

    tokens: int
    size: int
    expires: float
    shared_remaining: int  # what the shared bucket had left when the lease was taken


class RateLimiter:
    """Decides whether one request of ``rate_class`` by ``role`` from ``identity`` may proceed.

    The shared bucket is in Redis; each process *leases* tokens from it (one Redis call takes up to
    ``lease`` tokens) and spends them locally, so a busy key costs one Redis call per lease, not per
    request. Leases never create tokens: every token spent came out of the shared bucket, so all
    processes together stay within the quota. A lease lives ``lease_seconds``; what is left then is
    dropped (spent tokens are never given back, so an idle process can only under-serve, never
    over-serve). The size adapts: it doubles while leases run out before they expire, halves when they
    expire unused, and never exceeds ``max(1, quota // 20)`` — a small quota (``5/60``) is decided in
    Redis request by request, exactly.
    """

    def __init__(
        self,
        redis: Redis | None,
        limits: Mapping[str, Mapping[str, str]],
        *,
        namespace: str = "fs",
        fallback_seconds: float = 5.0,
        lease_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._quotas = {
            role: {cls: parse_quota(text) for cls, text in classes.items()}
            for role, classes in limits.items()
        }
        self._prefix = f"{namespace}:ratelimit"
        self._fallback_seconds = fallback_seconds
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._local = LocalBuckets(clock=clock)
        self._leases: dict[str, _Lease] = {}
        self._buckets: dict[tuple[str, str, str], str] = {}
        self._redis_down_until = float("-inf")
        self._script = None if redis is None else redis.register_script(_TOKEN_BUCKET_LUA)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def quota_for(self, role: str, rate_class: str) -> Quota:
        for name in (role, "*"):
            quota = self._quotas.get(name, {}).get(rate_class)
            if quota is not None:
                return quota
        return parse_quota(DEFAULT_RATE_LIMITS["*"][rate_class])

    async def check(self, rate_class: str, role: str, identity: str) -> Verdict:
        quota = self.quota_for(role, rate_class)
        bucket = self._bucket_of(rate_class, role, identity)
        lease = self._leases.get(bucket)
        if lease is not None and lease.tokens > 0 and self._clock() < lease.expires:
            lease.tokens -= 1  # the hot path: no Redis
            metrics.record_rate_limit(rate_class, "allowed", True)
            return Verdict(True, rate_class, quota, lease.shared_remaining + lease.tokens, 0.0, True)
        wanted = self._next_lease_size(lease, quota)
        shared = await self._take_shared(bucket, quota, wanted)
        if shared is not None:
            taken, remaining, wait = shared
            allowed = taken >= 1
            if allowed:
                expires = self._clock() + self._lease_seconds
                self._remember(bucket, _Lease(taken - 1, wanted, expires, remaining))
                remaining += taken - 1
        else:
            allowed, remaining, wait = self._local.take(bucket, quota)
        metrics.record_rate_limit(rate_class, "allowed" if allowed else "limited", shared is not None)
        return Verdict(allowed, rate_class, quota, remaining, wait, shared is not None)

    def _bucket_of(self, rate_class: str, role: str, identity: str) -> str:
        key = (rate_class, role, identity)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 10_000:
                self._buckets.clear()
            digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
            bucket = self._buckets[key] = f"{rate_class}:{role}:{digest}"
        return bucket

    @staticmethod
    def _next_lease_size(lease: _Lease | None, quota: Quota) -> int:
        largest = max(1, quota.quota // 20)
        if lease is None:
            return 1
        if lease.tokens > 0:  # expired before it was spent: ask for less
            return max(1, lease.size // 2)
        return min(largest, lease.size * 2)  # spent before it expired: ask for more

    def _remember(self, bucket: str, lease: _Lease) -> None:
        if bucket not in self._leases and len(self._leases) >= 10_000:
            self._leases.clear()
        self._leases[bucket] = lease

    async def _take_shared(self, bucket: str, quota: Quota, wanted: int) -> tuple[int, int, float] | None:
        if self._script is None or self._clock() < self._redis_down_until:
            return None
        ttl = max(1, math.ceil(quota.window * 2))
        try:
            answer = await self._script(
                keys=[f"{self._prefix}:{bucket}"], args=[quota.quota, repr(quota.rate), ttl, wanted]
            )
        except (RedisError, OSError, TimeoutError) as e:
            self._redis_down_until = self._clock() + self._fallback_seconds
            log.warning("ratelimit.redis_unavailable", error_class=type(e).__name__)
            return None
        taken, remaining, wait_ms = (int(x) for x in answer)
        return taken, remaining, wait_ms / 1000
