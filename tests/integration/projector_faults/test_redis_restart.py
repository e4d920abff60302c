"""A real Redis crash under the projector (private stack): the breaker opens, the client
reconnects by itself when Redis is back, and the emptied read model is rebuilt from the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from core.envelope import Event
from core.evolve import replay
from events.deadletters import DeadLetterStore
from events.resilience import AsyncCircuitBreaker, BreakerState
from projections.connection import make_redis
from projections.resilience import PROJECTOR_BREAKER
from runtime.devstack import Stack
from tests.integration.deadletters.conftest import dead_letters_migration
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import Chain, wire_projector

pytestmark = pytest.mark.integration


async def _until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _events(chain: Chain, keys: tuple[str, ...], rounds: int) -> list[Event]:
    events: list[Event] = []
    for round_ in range(rounds):
        events += [chain.configure(key, "production", on_config(round_ % 2 == 1)) for key in keys]
    return events


async def test_redis_killed_and_restarted__breaker_opens_then_closes__read_model_rebuilt(
    private_stack: Stack,
) -> None:
    assert private_stack.redis is not None
    keys = ("k0", "k1")
    chain = Chain()
    before = [chain.create(flag_doc(key, "production")) for key in keys] + _events(chain, keys, 2)
    after = _events(chain, keys, 2)
    topic = "projector-restart"
    await create_topic(private_stack.kafka_bootstrap, topic, partitions=1)
    await publish(private_stack.kafka_bootstrap, topic, before)
    pool = await asyncpg.create_pool(private_stack.database_url, min_size=1, max_size=2)
    assert pool is not None
    await pool.execute(dead_letters_migration())
    client = make_redis(private_stack.redis_url, socket_timeout=0.5, connect_timeout=0.5)
    breaker = AsyncCircuitBreaker(PROJECTOR_BREAKER, fail_max=2, reset_timeout=0.5)
    bootstrap = private_stack.kafka_bootstrap
    wired = wire_projector(client, DeadLetterStore(pool), bootstrap, topic, breaker=breaker)
    stop = asyncio.Event()
    await wired.projector.start()
    task = asyncio.create_task(wired.projector.run(stop, poll_timeout=0.2))
    try:

        async def at(count: int) -> bool:
            try:
                return await wired.model.checkpoint(wired.projector.group, topic, 0) == count
            except Exception:
                return False

        await _until(lambda: at(len(before)), 30, "the first events projected")
        private_stack.redis.kill()
        await publish(private_stack.kafka_bootstrap, topic, after)

        async def opened() -> bool:
            return breaker.state is BreakerState.OPEN

        await _until(opened, 20, "the breaker to open")
        private_stack.redis.start()
        events = before + after
        await _until(lambda: at(len(events)), 40, "the read model rebuilt")

        async def closed() -> bool:
            return breaker.state is BreakerState.CLOSED

        await _until(closed, 10, "the breaker to close")
        for key in keys:
            assert await wired.model.load_flag_state(key) == replay([e for e in events if e.flag_key == key])
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await wired.projector.stop()
        await client.aclose()
        await pool.close()
