"""Redis unreachable under the projector: the breaker opens, nothing advances, it closes by
itself when Redis is back, and every event is applied exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.evolve import replay
from core.state import FlagState
from events.deadletters import DeadLetterStore
from events.resilience import AsyncCircuitBreaker, BreakerState
from monitoring.metrics import REGISTRY
from projections.connection import make_redis
from projections.readmodel import RedisReadModel
from projections.resilience import PROJECTOR_BREAKER
from tests.faults.proxy import FaultProxy
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import Chain, wire_projector

pytestmark = pytest.mark.integration

_FLAGS = ("f0", "f1", "f2")


def _changes(chain: Chain, rounds: int) -> list[Event]:
    events: list[Event] = []
    for round_ in range(rounds):
        events += [chain.configure(key, "production", on_config(round_ % 2 == 0)) for key in _FLAGS]
    return events


async def _until(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def proxy(fresh_redis: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A fault proxy in front of the test's Redis and the URL through it."""
    url = urlsplit(fresh_redis)
    assert url.hostname is not None and url.port is not None
    async with FaultProxy(url.hostname, url.port) as fault:
        yield fault, f"redis://{fault.address}{url.path}"


def _breaker_gauge() -> float | None:
    return REGISTRY.get_sample_value("flagstream_circuit_breaker_state", {"breaker": PROJECTOR_BREAKER})


async def test_redis_down__breaker_opens_nothing_advances__closes_and_applies_each_event_once(
    proxy: tuple[FaultProxy, str], client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    fault, through_proxy = proxy
    chain = Chain()
    before = [chain.create(flag_doc(key, "production")) for key in _FLAGS] + _changes(chain, 2)
    after = _changes(chain, 3)
    projected = make_redis(through_proxy, socket_timeout=0.5, connect_timeout=0.5)
    breaker = AsyncCircuitBreaker(PROJECTOR_BREAKER, fail_max=2, reset_timeout=0.5)
    wired = wire_projector(projected, dlq, kafka_bootstrap, topic, breaker=breaker)
    stop = asyncio.Event()
    await publish(kafka_bootstrap, topic, before)
    await wired.projector.start()
    task = asyncio.create_task(wired.projector.run(stop, poll_timeout=0.2))
    try:
        checkpoint_key = wired.model.keys.checkpoint(wired.projector.group, topic, 0)

        async def caught_up(count: int) -> bool:
            raw = await client.get(checkpoint_key)
            return raw is not None and int(raw) == count

        await _until(lambda: caught_up(len(before)), within=30)
        await fault.refuse()
        fault.cut()
        await publish(kafka_bootstrap, topic, after)

        async def opened() -> bool:
            return breaker.state is BreakerState.OPEN

        await _until(opened, within=20)
        assert _breaker_gauge() == 2.0
        assert await caught_up(len(before))  # nothing advanced while Redis was unreachable
        assert not task.done()
        await fault.restore()
        total = len(before) + len(after)
        await _until(lambda: caught_up(total), within=30)
        await _until(lambda: _closed(breaker), within=10)
        assert _breaker_gauge() == 0.0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await wired.projector.stop()
        await projected.aclose()
    events = before + after
    reader = RedisReadModel(client)
    expected = {key: replay([e for e in events if e.flag_key == key]) for key in _FLAGS}
    states: dict[str, FlagState] = {key: await reader.load_flag_state(key) for key in _FLAGS}
    assert states == expected
    # every event wrote its document exactly once: the revision counter counts applied writes
    assert int(await client.get(reader.keys.env_rev("production")) or 0) == len(events)


async def _closed(breaker: AsyncCircuitBreaker) -> bool:
    return breaker.state is BreakerState.CLOSED
