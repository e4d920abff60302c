"""Postgres (the dead-letter queue) unreachable under the projector: healthy records keep being
projected, a poison record waits (nothing parked, the checkpoint stays before it) until Postgres
is back, then it is parked once and the partition moves on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from events.deadletters import DeadLetterFilter, DeadLetterStore
from tests.faults.proxy import FaultProxy
from tests.integration.deadletters.conftest import dead_letters_migration
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import Chain, wire_projector

pytestmark = pytest.mark.integration


async def _until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


Proxied = tuple[FaultProxy, DeadLetterStore, DeadLetterStore]


@pytest.fixture
async def proxied_dlq(fresh_database: str) -> AsyncIterator[Proxied]:
    """A store through a fault proxy (the projector's) and a direct one (the test's eyes)."""
    url = urlsplit(fresh_database)
    assert url.hostname is not None and url.port is not None
    direct = await asyncpg.create_pool(fresh_database, min_size=1, max_size=2)
    assert direct is not None
    await direct.execute(dead_letters_migration())
    async with FaultProxy(url.hostname, url.port) as fault:
        netloc = f"{url.username}@{fault.address}" if url.username else fault.address
        through = urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment))
        pool = await asyncpg.create_pool(through, min_size=1, max_size=2, command_timeout=2)
        assert pool is not None
        try:
            yield fault, DeadLetterStore(pool), DeadLetterStore(direct)
        finally:
            pool.terminate()
            await direct.close()


async def test_dead_letters_down__healthy_flow_poison_waits__parked_once_when_back(
    proxied_dlq: Proxied,
    client: Redis,
    kafka_bootstrap: str,
    topic: str,
) -> None:
    fault, store, eyes = proxied_dlq
    chain = Chain()
    first = [chain.create(flag_doc("a", "production")), chain.create(flag_doc("b", "production"))]
    b2 = chain.configure("b", "production", on_config(True))
    poison = chain.configure("a", "production", on_config(True), schema_version=2)
    b3 = chain.configure("b", "production", on_config(False))
    wired = wire_projector(client, store, kafka_bootstrap, topic, refresh_interval=0.1)
    checkpoint_key = wired.model.keys.checkpoint(wired.projector.group, topic, 0)

    async def checkpoint_at(offset: int) -> bool:
        return await client.get(checkpoint_key) == str(offset)

    await publish(kafka_bootstrap, topic, first)
    stop = asyncio.Event()
    await wired.projector.start()
    task = asyncio.create_task(wired.projector.run(stop, poll_timeout=0.2))
    try:
        await _until(lambda: checkpoint_at(2), 30, "the first records projected")
        await fault.refuse()
        fault.cut()
        await publish(kafka_bootstrap, topic, [b2, poison, b3])
        await _until(lambda: checkpoint_at(3), 20, "b v2 projected while Postgres is down")
        await asyncio.sleep(1.0)  # an absence is proven over a window: the projector retries meanwhile
        assert await checkpoint_at(3)  # the poison (offset 3) is not passed without being parked
        assert (await wired.model.load_flag_state("b")).version == 2
        assert (await eyes.list(DeadLetterFilter(status=None))).items == []
        await fault.restore()
        await _until(lambda: checkpoint_at(5), 30, "the poison parked and b v3 projected")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await wired.projector.stop()
    letters = (await eyes.list(DeadLetterFilter(stage="projector"))).items
    assert [(lt.flag_key, lt.version, lt.error_class, lt.attempts) for lt in letters] == [
        ("a", 2, "UnsupportedSchemaVersion", 1)
    ]
    assert (await wired.model.load_flag_state("b")).version == 3
