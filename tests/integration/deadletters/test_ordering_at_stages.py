"""The ordering rule at the projector, end to end (Kafka, Redis, Postgres): after Redis lost the
read model, a flag blocked by a dead letter at v3 gets v1 and v2 back — only v3 and later wait.

(The same rule at the relay, after a republish of the whole log, is tested in
``tests/integration/events/test_relay_dead_letters.py``; the rule itself in
``tests/unit/events/test_ordering.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.evolve import replay
from events.deadletters import DeadLetterFilter, DeadLetterStore
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import on_config
from tests.integration.projector_faults._scenario import Poisoned, Wired, wire_projector
from tests.integration.projector_faults.conftest import client, dlq, topic

pytestmark = pytest.mark.integration

__all__ = ["client", "dlq", "topic"]  # the fixtures, shared with the projector's fault tests


@pytest.fixture
async def poisoned(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> AsyncIterator[tuple[Poisoned, Wired]]:
    """Flag a projected to v2, blocked at v3 (unreadable schema), v4 waiting; b flows."""
    scenario = Poisoned()
    records = scenario.records()
    await publish(kafka_bootstrap, topic, records, key=b"c")
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def passed_all() -> bool:
            return await wired.model.checkpoint(wired.projector.group, topic, 0) == len(records)

        await wired.projector.run_until(passed_all, within=30)
        yield scenario, wired
    finally:
        await wired.projector.stop()


async def test_redis_wiped__blocked_flag__versions_below_the_blocker_projected_again(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore, client: Redis, kafka_bootstrap: str
) -> None:
    scenario, wired = poisoned
    assert (await wired.model.load_flag_state("a")).version == 2
    await client.flushdb()  # Redis lost everything: the projector rewinds to the start of the log
    b3 = scenario.chain.configure("b", "production", on_config(False))
    await publish(kafka_bootstrap, wired.projector.topic, [b3])
    expected_b = replay([*scenario.b, b3])

    async def rebuilt() -> bool:
        return await wired.model.load_flag_state("b") == expected_b

    await wired.projector.run_until(rebuilt, within=30)
    assert await wired.model.load_flag_state("a") == replay(scenario.a[:2])  # v1, v2 back; v3 still parked
    page = await dlq.list(DeadLetterFilter(stage="projector", flag_key="a"), limit=100)
    assert sorted((lt.version, lt.status) for lt in page.items) == [(3, "parked"), (4, "parked")]
