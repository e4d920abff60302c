"""A fake monotonic clock and sleep: breaker and retry tests never wait for real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from events.resilience import AsyncCircuitBreaker, BreakerState


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move time forward, without waiting."""
        self.sleeps.append(seconds)
        self.advance(seconds)


async def wait_until(condition: Callable[[], bool], *, within: float = 2.0) -> None:
    """Poll ``condition`` on the event loop until it holds, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state owned by the code under test
            await asyncio.sleep(0.001)


def state_of(breaker: AsyncCircuitBreaker) -> BreakerState:
    """Read the state afresh (keeps mypy from narrowing a property across awaits)."""
    return breaker.state
