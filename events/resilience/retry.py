"""A bounded retry policy (tenacity) that retries only retriable errors and never through an open breaker.

:func:`call_resilient` is the one way the platform calls a dependency:

- each attempt goes through the breaker, optionally bounded by ``attempt_timeout`` (a timeout is
  a retriable failure and counts against the breaker);
- retriable errors are retried with exponential backoff and full jitter, bounded by
  ``max_attempts`` and by ``max_delay`` seconds in total (a sleep that would cross the deadline
  is not taken);
- :class:`CircuitOpen` is never retried: the caller keeps its work and comes back later,
  so an open breaker means no hammering;
- permanent errors are raised at once, unchanged, for the caller to dead-letter.

The last error is re-raised as itself (never wrapped in ``tenacity.RetryError``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from events.resilience.breaker import AsyncCircuitBreaker, CircuitOpen
from events.resilience.classify import describe_error, is_retriable

__all__ = ["RetryPolicy", "call_resilient"]

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger(__name__)


def _should_retry(exc: BaseException) -> bool:
    return not isinstance(exc, CircuitOpen) and is_retriable(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``wait = uniform(0, min(max_wait, initial_wait * 2**n))`` (AWS "full jitter")."""

    max_attempts: int = 5
    max_delay: float = 30.0
    initial_wait: float = 0.1
    max_wait: float = 5.0
    attempt_timeout: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_delay < 0 or self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("retry bounds must be positive")

    def retrying(self, *, operation: str = "call") -> AsyncRetrying:
        """A fresh tenacity controller for one logical operation."""
        started = self.clock()

        def stop(state: RetryCallState) -> bool:
            elapsed = self.clock() - started
            upcoming = state.upcoming_sleep or 0.0
            return state.attempt_number >= self.max_attempts or elapsed + upcoming >= self.max_delay

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            error_class, message = describe_error(exc) if exc is not None else ("", "")
            log.info(
                "retry.backoff",
                operation=operation,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                error_class=error_class,
                error=message,
            )

        return AsyncRetrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait),
            retry=retry_if_exception(_should_retry),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


async def call_resilient(
    breaker: AsyncCircuitBreaker,
    policy: RetryPolicy,
    fn: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Await ``fn(*args, **kwargs)`` through ``breaker`` under ``policy``.

    Raises :class:`CircuitOpen` (keep the work, retry later), the last retriable error once
    the policy is exhausted (keep the work, retry later), or a permanent error (dead-letter it).
    """

    async def attempt_once() -> T:
        if policy.attempt_timeout is None:
            return await fn(*args, **kwargs)
        async with asyncio.timeout(policy.attempt_timeout):
            return await fn(*args, **kwargs)

    async for attempt in policy.retrying(operation=breaker.name):
        with attempt:
            return await breaker.call(attempt_once)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
