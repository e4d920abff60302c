"""Version gaps at the projector: bridged when an operator purged the missing version (here at
the relay, so Kafka never carried it), parked as the flag's blocker when nothing explains them."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from core.errors import MalformedEvent
from events.deadletters import DeadLetterFilter, DeadLetterStore, NewDeadLetter
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import Chain, wire_projector

pytestmark = pytest.mark.integration


async def test_gap__missing_version_purged_at_relay__bridged_and_applied(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    chain = Chain()
    created = chain.create(flag_doc("g", "production"))
    lost = chain.configure("g", "production", on_config(False))  # purged at the relay: never in Kafka
    third = chain.configure("g", "production", on_config(True))
    relay_letter = await dlq.park(NewDeadLetter.for_event("relay", lost, MalformedEvent("too large")))
    await dlq.mark_purged(relay_letter.id, by="admin", reason="oversized payload")
    await publish(kafka_bootstrap, topic, [created, third])
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def projected() -> bool:
            return (await wired.model.load_flag_state("g")).version == 3

        await wired.projector.run_until(projected, within=30)
    finally:
        await wired.projector.stop()
    state = await wired.model.load_flag_state("g")
    assert state.flag is not None and state.flag.environments["production"] == on_config(True)
    assert state.last_hash == third.hash
    assert (await dlq.list(DeadLetterFilter(stage="projector", status=None))).items == []


async def test_gap__unexplained__parked_as_version_gap_and_flag_blocked(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    chain = Chain()
    created = chain.create(flag_doc("h", "production"))
    chain.configure("h", "production", on_config(False))  # v2 never published, never purged
    third = chain.configure("h", "production", on_config(True))
    await publish(kafka_bootstrap, topic, [created, third])
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def passed() -> bool:
            return await wired.model.checkpoint(wired.projector.group, topic, 0) == 2

        await wired.projector.run_until(passed, within=30)
    finally:
        await wired.projector.stop()
    (letter,) = (await dlq.list(DeadLetterFilter(stage="projector"))).items
    assert (letter.flag_key, letter.version, letter.error_class) == ("h", 3, "VersionGap")
    assert (await wired.model.load_flag_state("h")).version == 1
    assert await dlq.blocked_flags("projector") == {"h"}
