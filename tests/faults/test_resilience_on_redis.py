"""The breaker and the retry policy against a real Redis behind the fault proxy: an outage opens
the breaker, an open breaker makes no connection attempts at all, and after the reset timeout a
single trial closes it again. Time for the breaker and backoff is a fake clock; only the Redis
socket timeouts are real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from events.resilience import AsyncCircuitBreaker, BreakerState, CircuitOpen, RetryPolicy, call_resilient
from tests.faults.proxy import FaultProxy
from tests.unit.resilience._fakes import FakeClock, state_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    parts = urlsplit(redis_url)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as running:
        yield running


async def test_redis_outage__breaker_opens_stops_connecting_and_one_trial_closes_it(
    proxy: FaultProxy,
) -> None:
    clock = FakeClock()
    breaker = AsyncCircuitBreaker("redis-fault-test", fail_max=3, reset_timeout=30.0, clock=clock)
    policy = RetryPolicy(max_attempts=2, initial_wait=0.05, max_wait=0.1, clock=clock, sleep=clock.sleep)
    client = aioredis.Redis(
        host=proxy.host, port=proxy.port, socket_timeout=0.3, socket_connect_timeout=0.3,
        retry=Retry(NoBackoff(), 0), max_connections=20,
    )  # fmt: skip
    try:
        assert await call_resilient(breaker, policy, client.ping)

        # Given Redis unreachable: connections reset, new ones accepted and blackholed
        proxy.drop()
        proxy.cut()
        with pytest.raises((redis_errors.ConnectionError, redis_errors.TimeoutError)):
            await call_resilient(breaker, policy, client.ping)  # 2 attempts, 2 failures
        with pytest.raises(CircuitOpen):
            await call_resilient(breaker, policy, client.ping)  # 3rd failure opens; no 4th attempt
        assert state_of(breaker) is BreakerState.OPEN

        # While open: fail fast, not one connection attempt reaches the network
        accepted = proxy.accepted
        for _ in range(20):
            with pytest.raises(CircuitOpen):
                await call_resilient(breaker, policy, client.ping)
        assert proxy.accepted == accepted

        # When Redis is back and the reset timeout has passed: one trial among ten callers
        proxy.cut()
        await proxy.restore()
        clock.advance(30.0)
        results = await asyncio.gather(
            *(call_resilient(breaker, policy, client.ping) for _ in range(10)), return_exceptions=True
        )
        assert results.count(True) == 1
        assert sum(isinstance(r, CircuitOpen) for r in results) == 9
        assert state_of(breaker) is BreakerState.CLOSED
        assert await call_resilient(breaker, policy, client.ping)
    finally:
        await client.aclose()
