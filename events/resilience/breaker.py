"""An asyncio-native circuit breaker whose failures are the dependency's failures only.

Why not pybreaker (1.4): decorating an ``async def`` never counts a failure; ``calling()``
counts, but its half-open state lets every concurrent caller through, its clock
(``datetime.now``) cannot be driven by a test, and its state sits behind a ``threading.RLock``.
This breaker keeps pybreaker's states and consecutive-failure semantics and adds:

- one trial call in half-open; concurrent callers fail fast with :class:`CircuitOpen`;
- only *retriable* errors (see :mod:`events.resilience.classify`) count as failures; a permanent
  error is the dependency answering, so it counts as a success for the breaker;
- outcomes of calls that started before the last state change are ignored (a slow call that
  fails after the breaker opened does not re-open it later, a slow success does not close it);
- an injectable monotonic clock; listeners and Prometheus metrics on every transition.

It is single-event-loop code: state changes happen between awaits, so it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import ParamSpec, TypeVar

import structlog

from core.errors import FlagstreamError
from events.resilience.classify import is_retriable

__all__ = ["AsyncCircuitBreaker", "BreakerState", "CircuitOpen", "TransitionListener"]

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TransitionListener = Callable[[str, BreakerState, BreakerState], None]
"""Called with ``(breaker name, old state, new state)`` after each transition."""


class CircuitOpen(FlagstreamError):
    """The breaker refused the call without making it. Keep the work; try again after ``retry_after``."""

    code = "circuit_open"
    http_status = 503
    retriable = True

    def __init__(self, breaker: str, retry_after: float) -> None:
        super().__init__(f"circuit breaker {breaker!r} is open; retry in {retry_after:.1f}s")
        self.breaker = breaker
        self.retry_after = retry_after


def _record_metrics(name: str, old: BreakerState, new: BreakerState) -> None:
    from monitoring import metrics  # lazily: metrics are optional for users of this module

    metrics.record_breaker_transition(name, new.value)


class AsyncCircuitBreaker:
    """Closed → (``fail_max`` consecutive retriable failures) → open → (``reset_timeout``) →
    half-open: one trial call; success closes, a retriable failure opens again."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = is_retriable,
        listeners: Sequence[TransitionListener] = (),
        export_metrics: bool = True,
    ) -> None:
        if fail_max < 1 or reset_timeout <= 0:
            raise ValueError("fail_max must be >= 1 and reset_timeout > 0")
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._is_failure = is_failure
        self._listeners: list[TransitionListener] = list(listeners)
        if export_metrics:
            self._listeners.append(_record_metrics)
            _record_initial_state(name)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._generation = 0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state. An open breaker whose timeout has passed still reads ``open``
        until a call arrives and becomes the trial."""
        return self._state

    @property
    def failure_count(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (0 unless open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker, or raise :class:`CircuitOpen`."""
        generation, is_trial = self._admit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._on_outcome(generation, is_trial, failed=self._is_failure(exc))
            raise
        except BaseException:  # cancelled: no verdict on the dependency; free the trial slot
            if is_trial and generation == self._generation:
                self._trial_in_flight = False
            raise
        self._on_outcome(generation, is_trial, failed=False)
        return result

    def _admit(self) -> tuple[int, bool]:
        if self._state is BreakerState.OPEN:
            wait = self.retry_after()
            if wait > 0:
                raise CircuitOpen(self.name, wait)
            self._transition(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpen(self.name, 0.0)
            self._trial_in_flight = True
            return self._generation, True
        return self._generation, False

    def _on_outcome(self, generation: int, is_trial: bool, *, failed: bool) -> None:
        if generation != self._generation:
            return  # started under an earlier state: its verdict is stale
        if is_trial:
            self._trial_in_flight = False
            self._transition(BreakerState.OPEN if failed else BreakerState.CLOSED)
            return
        if not failed:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.fail_max:
            self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._failures = 0
        self._trial_in_flight = False
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        log.warning("breaker.transition", breaker=self.name, old=old.value, new=new.value)
        for listener in self._listeners:
            try:
                listener(self.name, old, new)
            except Exception:  # a broken listener must not break the breaker
                log.exception("breaker.listener_failed", breaker=self.name)


def _record_initial_state(name: str) -> None:
    from monitoring import metrics

    metrics.set_breaker_state(name, "closed")
