"""An event store whose every Postgres call goes through a circuit breaker, with retries only where safe.

Reads (``read_stream``, ``current_version``, ``find_idempotency``, ``stream_keys``) are retried
under a short bounded :class:`RetryPolicy`: reading twice changes nothing.

An append is **not** retried blindly. A connection lost or a timeout while the transaction's
``COMMIT`` was on the wire is ambiguous: the events may be committed. Retrying the same sealed
events would then meet a :class:`VersionConflict`, which the command service answers by deciding
the command again on the fresh state — a second change for one request. So:

- a failure while *connecting* (refused, server starting up, too many connections, name
  resolution) means nothing was sent: the append is retried (bounded, with jitter);
- any other retriable failure is settled by one bounded read of the stream: if the first event's
  id is stored at its version, the transaction committed (an append is all-or-nothing) and the
  append succeeded; otherwise the original error is raised (``503`` + ``Retry-After`` at the
  API). A client retrying with the same ``Idempotency-Key`` is then answered from the stored
  response if a slow commit did land after the check.

The settling read bypasses the breaker (the append's own failure may just have opened it); it is
a single call bounded by ``settle_timeout``.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, ParamSpec, TypeVar

import asyncpg
import structlog

from core.envelope import Event
from events.ports import EventStore
from events.resilience import AsyncCircuitBreaker, CircuitOpen, RetryPolicy, call_resilient, is_retriable
from events.store.idempotency import IdempotencyRecord, IdempotencyWrite

__all__ = ["READ_RETRY", "GuardedEventStore", "failed_before_sending"]

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger(__name__)

READ_RETRY: Final = RetryPolicy(
    max_attempts=3, max_delay=2.0, initial_wait=0.05, max_wait=0.5, attempt_timeout=5.0
)
"""Reads on the request path: a few quick tries, then ``503``; the client's retry does the rest."""

_CONNECT_PHASE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    ConnectionRefusedError,
    socket.gaierror,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
_APPEND_ATTEMPTS: Final = 3


def failed_before_sending(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) happened while connecting, before any
    statement reached the server."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _CONNECT_PHASE_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class GuardedEventStore:
    """:class:`EventStore` over another one, through ``breaker`` (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        breaker: AsyncCircuitBreaker,
        *,
        read_policy: RetryPolicy = READ_RETRY,
        settle_timeout: float = 3.0,
    ) -> None:
        self._store = store
        self._breaker = breaker
        self._policy = read_policy
        self._settle_timeout = settle_timeout

    @property
    def breaker(self) -> AsyncCircuitBreaker:
        return self._breaker

    async def guard_read(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Any read-only call, through the breaker with bounded retries of retriable errors."""
        return await call_resilient(self._breaker, self._policy, fn, *args, **kwargs)

    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]:
        return await self.guard_read(self._store.read_stream, stream_key, to_version=to_version)

    async def current_version(self, stream_key: str) -> int:
        return await self.guard_read(self._store.current_version, stream_key)

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        return await self.guard_read(self._store.find_idempotency, principal, key)

    async def stream_keys(self) -> list[str]:
        return await self.guard_read(self._store.stream_keys)

    async def remember_answer(self, idempotency: IdempotencyWrite) -> None:
        """Retried like a read: writing the same answer again is refused as a duplicate, which the
        command service answers with the (same) stored response."""
        await self.guard_read(self._store.remember_answer, idempotency)

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._breaker.call(self._store.append, events, idempotency=idempotency)
                return
            except CircuitOpen:
                raise
            except Exception as e:
                if not is_retriable(e):
                    raise
                failure = e
            if failed_before_sending(failure):
                if attempt >= _APPEND_ATTEMPTS:
                    raise failure
                await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))  # backoff with full jitter
                continue
            if await self._committed(events):
                log.warning(
                    "append.ambiguous_failure_committed",
                    stream=events[0].flag_key,
                    version=events[0].version,
                    error_class=type(failure).__name__,
                )
                return
            raise failure

    async def _committed(self, events: Sequence[Event]) -> bool:
        """Whether the (all-or-nothing) append of ``events`` is stored; False when that cannot be told."""
        first = events[0]
        try:
            async with asyncio.timeout(self._settle_timeout):
                stored = await self._store.read_stream(first.flag_key, to_version=first.version)
        except Exception as e:
            log.warning("append.outcome_unknown", stream=first.flag_key, error_class=type(e).__name__)
            return False
        return any(event.event_id == first.event_id for event in stored)
