from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import aiokafka.errors as kafka_errors
import pytest

from core.errors import MalformedEvent
from events.resilience import AsyncCircuitBreaker, BreakerState, CircuitOpen, RetryPolicy, call_resilient
from tests.unit.resilience._fakes import FakeClock


class Flaky:
    """Fails with the errors it is given, in order, then succeeds; optionally takes (fake) time."""

    def __init__(self, *errors: BaseException, clock: FakeClock | None = None, takes: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.clock = clock
        self.takes = takes

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.errors:
            raise self.errors.pop(0)
        return value


def _retriable() -> BaseException:
    error: BaseException = kafka_errors.KafkaConnectionError()
    return error


def _setup(*, fail_max: int = 100, **policy: object) -> tuple[FakeClock, AsyncCircuitBreaker, RetryPolicy]:
    clock = FakeClock()
    breaker = AsyncCircuitBreaker(
        f"retry-{uuid.uuid4().hex[:8]}",
        fail_max=fail_max,
        reset_timeout=30.0,
        clock=clock,
        export_metrics=False,
    )
    settings: dict[str, object] = {"max_attempts": 5, "max_delay": 60.0, "initial_wait": 0.5, "max_wait": 4.0}
    settings.update(policy)
    return clock, breaker, RetryPolicy(clock=clock, sleep=clock.sleep, **settings)  # type: ignore[arg-type]


async def test_call_resilient__retriable_then_success__retried_with_backoff_and_returns() -> None:
    clock, breaker, policy = _setup()
    dep = Flaky(_retriable(), _retriable())
    assert await call_resilient(breaker, policy, dep, "published") == "published"
    assert dep.calls == 3
    assert len(clock.sleeps) == 2
    assert breaker.state is BreakerState.CLOSED


async def test_call_resilient__permanent_error__raised_at_once_unchanged() -> None:
    clock, breaker, policy = _setup()
    poison = MalformedEvent("cannot apply")
    dep = Flaky(poison)
    with pytest.raises(MalformedEvent) as raised:
        await call_resilient(breaker, policy, dep, "x")
    assert raised.value is poison
    assert dep.calls == 1
    assert clock.sleeps == []


async def test_call_resilient__always_retriable__stops_after_max_attempts_with_last_error() -> None:
    clock, breaker, policy = _setup(max_attempts=4)
    errors = [_retriable() for _ in range(10)]
    dep = Flaky(*errors)
    with pytest.raises(kafka_errors.KafkaConnectionError) as raised:
        await call_resilient(breaker, policy, dep, "x")
    assert dep.calls == 4
    assert raised.value is errors[3]
    assert len(clock.sleeps) == 3


async def test_call_resilient__slow_dependency__stops_before_crossing_total_delay() -> None:
    clock, breaker, policy = _setup(max_attempts=100, max_delay=25.0)
    dep = Flaky(*[_retriable() for _ in range(100)], clock=clock, takes=10.0)
    started = clock.now
    with pytest.raises(kafka_errors.KafkaConnectionError):
        await call_resilient(breaker, policy, dep, "x")
    assert dep.calls == 3
    assert clock.now - started < 25.0 + 10.0  # no sleep past the deadline, only the last call's time


async def test_call_resilient__waits__exponential_full_jitter_within_bounds() -> None:
    samples: list[list[float]] = []
    for _ in range(20):
        clock, breaker, policy = _setup(max_attempts=6, initial_wait=0.5, max_wait=4.0)
        with pytest.raises(kafka_errors.KafkaConnectionError):
            await call_resilient(breaker, policy, Flaky(*[_retriable() for _ in range(6)]), "x")
        samples.append(clock.sleeps)
    for waits in samples:
        assert len(waits) == 5
        for n, wait in enumerate(waits):
            assert 0.0 <= wait <= min(4.0, 0.5 * 2**n)
    assert len({round(waits[2], 9) for waits in samples}) > 1  # jittered, not lock-step


async def test_call_resilient__breaker_open__fails_fast_without_calling_or_sleeping() -> None:
    clock, breaker, policy = _setup(fail_max=1)
    with pytest.raises(kafka_errors.KafkaConnectionError):
        await breaker.call(Flaky(_retriable()), "x")
    assert breaker.state is BreakerState.OPEN
    dep = Flaky()
    with pytest.raises(CircuitOpen):
        await call_resilient(breaker, policy, dep, "x")
    assert dep.calls == 0
    assert clock.sleeps == []


async def test_call_resilient__breaker_opens_during_retries__stops_with_circuit_open() -> None:
    clock, breaker, policy = _setup(fail_max=2, max_attempts=10)
    dep = Flaky(*[_retriable() for _ in range(10)])
    with pytest.raises(CircuitOpen):
        await call_resilient(breaker, policy, dep, "x")
    assert dep.calls == 2
    assert len(clock.sleeps) == 2
    assert breaker.state is BreakerState.OPEN


async def test_call_resilient__attempt_hangs__bounded_by_attempt_timeout_and_counted() -> None:
    _, breaker, policy = _setup(max_attempts=2, attempt_timeout=0.02)
    never = asyncio.Event()
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await never.wait()

    with pytest.raises(TimeoutError):
        await call_resilient(breaker, policy, hangs)
    assert calls == 2
    assert breaker.failure_count == 2


@pytest.mark.parametrize(
    "bad",
    [
        lambda: RetryPolicy(max_attempts=0),
        lambda: RetryPolicy(max_delay=-1),
        lambda: RetryPolicy(max_wait=-1),
    ],
)
def test_retry_policy__invalid_bounds__refused(bad: Callable[[], RetryPolicy]) -> None:
    with pytest.raises(ValueError):
        bad()
