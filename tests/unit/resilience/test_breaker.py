from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.exceptions as redis_errors

from core.errors import MalformedEvent
from events.resilience import AsyncCircuitBreaker, BreakerState, CircuitOpen
from monitoring.metrics import REGISTRY
from tests.unit.resilience._fakes import FakeClock, state_of, wait_until


class Dependency:
    """A stand-in for a Kafka/Redis/Postgres call: fails with whatever it is told to, counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return "ok"


def _retriable() -> BaseException:
    return redis_errors.ConnectionError("Connection refused")


def _breaker(clock: FakeClock, **kwargs: object) -> tuple[AsyncCircuitBreaker, list[tuple[str, str]]]:
    transitions: list[tuple[str, str]] = []
    breaker = AsyncCircuitBreaker(
        f"test-{uuid.uuid4().hex[:8]}",
        fail_max=3,
        reset_timeout=30.0,
        clock=clock,
        listeners=[lambda _name, old, new: transitions.append((old.value, new.value))],
        **kwargs,  # type: ignore[arg-type]
    )
    return breaker, transitions


async def _fail_times(breaker: AsyncCircuitBreaker, dep: Dependency, n: int) -> None:
    assert dep.error is not None
    for _ in range(n):
        with pytest.raises(type(dep.error)):
            await breaker.call(dep)


async def _open(breaker: AsyncCircuitBreaker, dep: Dependency) -> None:
    dep.error = _retriable()
    await _fail_times(breaker, dep, breaker.fail_max)
    assert state_of(breaker) is BreakerState.OPEN


async def test_closed__success__returns_result_and_stays_closed() -> None:
    breaker, transitions = _breaker(FakeClock())
    assert await breaker.call(Dependency()) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED
    assert transitions == []


async def test_closed__fail_max_retriable_failures__opens() -> None:
    breaker, transitions = _breaker(FakeClock())
    dep = Dependency()
    dep.error = _retriable()
    await _fail_times(breaker, dep, 2)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == 2
    await _fail_times(breaker, dep, 1)
    assert state_of(breaker) is BreakerState.OPEN
    assert transitions == [("closed", "open")]


async def test_closed__permanent_errors__never_open_and_reset_the_count() -> None:
    breaker, _ = _breaker(FakeClock())
    dep = Dependency()
    dep.error = _retriable()
    await _fail_times(breaker, dep, 2)
    dep.error = MalformedEvent("poison payload")
    await _fail_times(breaker, dep, 10)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == 0


async def test_closed__success_between_failures__count_restarts() -> None:
    breaker, _ = _breaker(FakeClock())
    dep = Dependency()
    for _ in range(3):
        dep.error = _retriable()
        await _fail_times(breaker, dep, 2)
        dep.error = None
        await breaker.call(dep)
    assert state_of(breaker) is BreakerState.CLOSED


async def test_open__call__fails_fast_without_calling() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    dep = Dependency()
    await _open(breaker, dep)
    calls_before = dep.calls
    clock.advance(10.0)
    with pytest.raises(CircuitOpen) as raised:
        await breaker.call(dep)
    assert dep.calls == calls_before
    assert raised.value.retry_after == pytest.approx(20.0)
    assert breaker.retry_after() == pytest.approx(20.0)


async def test_open__reset_timeout_passed__exactly_one_concurrent_trial_goes_through() -> None:
    clock = FakeClock()
    breaker, transitions = _breaker(clock)
    dep = Dependency()
    await _open(breaker, dep)
    calls_before = dep.calls
    clock.advance(30.0)
    dep.error, dep.gate = None, asyncio.Event()

    async def caller() -> str | CircuitOpen:
        try:
            return await breaker.call(dep)
        except CircuitOpen as refused:
            return refused

    tasks = [asyncio.create_task(caller()) for _ in range(10)]
    await wait_until(lambda: sum(t.done() for t in tasks) == 9)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert dep.calls == calls_before + 1
    dep.gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == 1
    assert sum(isinstance(r, CircuitOpen) for r in results) == 9
    assert dep.calls == calls_before + 1
    assert state_of(breaker) is BreakerState.CLOSED
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_half_open__trial_retriable_failure__opens_again_for_a_full_timeout() -> None:
    clock = FakeClock()
    breaker, transitions = _breaker(clock)
    dep = Dependency()
    await _open(breaker, dep)
    clock.advance(30.0)
    await _fail_times(breaker, dep, 1)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(30.0)
    assert transitions[-2:] == [("open", "half_open"), ("half_open", "open")]


async def test_half_open__trial_permanent_error__dependency_answered_so_closes() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    dep = Dependency()
    await _open(breaker, dep)
    clock.advance(30.0)
    dep.error = MalformedEvent("poison payload")
    await _fail_times(breaker, dep, 1)
    assert state_of(breaker) is BreakerState.CLOSED


async def test_half_open__trial_cancelled__next_caller_becomes_the_trial() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    dep = Dependency()
    await _open(breaker, dep)
    clock.advance(30.0)
    dep.error, dep.gate = None, asyncio.Event()
    trial = asyncio.create_task(breaker.call(dep))
    await wait_until(lambda: state_of(breaker) is BreakerState.HALF_OPEN)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    dep.gate.set()
    assert await breaker.call(dep) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_open__stale_failure_of_a_call_started_while_closed__does_not_reopen_after_recovery() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    slow, fast = Dependency(), Dependency()
    slow.error, slow.gate = _retriable(), asyncio.Event()
    in_flight = asyncio.create_task(breaker.call(slow))
    await wait_until(lambda: slow.calls == 1)
    await _open(breaker, fast)
    clock.advance(30.0)
    fast.error = None
    await breaker.call(fast)
    assert state_of(breaker) is BreakerState.CLOSED
    slow.gate.set()
    with pytest.raises(redis_errors.ConnectionError):
        await in_flight
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failure_count == 0


async def test_transition__listener_raises__breaker_still_works() -> None:
    clock = FakeClock()

    def broken(_name: str, _old: BreakerState, _new: BreakerState) -> None:
        raise RuntimeError("listener bug")

    breaker = AsyncCircuitBreaker("broken-listener", fail_max=1, clock=clock, listeners=[broken])
    dep = Dependency()
    dep.error = _retriable()
    await _fail_times(breaker, dep, 1)
    assert state_of(breaker) is BreakerState.OPEN


async def test_transitions__metrics_exported__gauge_and_counter_follow() -> None:
    clock = FakeClock()
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    breaker = AsyncCircuitBreaker(name, fail_max=1, reset_timeout=5.0, clock=clock)
    gauge = "flagstream_circuit_breaker_state"
    assert REGISTRY.get_sample_value(gauge, {"breaker": name}) == 0
    dep = Dependency()
    dep.error = _retriable()
    await _fail_times(breaker, dep, 1)
    assert REGISTRY.get_sample_value(gauge, {"breaker": name}) == 2
    clock.advance(5.0)
    dep.error = None
    await breaker.call(dep)
    assert REGISTRY.get_sample_value(gauge, {"breaker": name}) == 0
    counter = "flagstream_circuit_breaker_transitions_total"
    for state in ("open", "half_open", "closed"):
        assert REGISTRY.get_sample_value(counter, {"breaker": name, "state": state}) == 1


def test_init__invalid_bounds__refused() -> None:
    with pytest.raises(ValueError):
        AsyncCircuitBreaker("bad", fail_max=0)
    with pytest.raises(ValueError):
        AsyncCircuitBreaker("bad", reset_timeout=0)
