"""Issue 9 §2.7: an event with the right version but a prev_hash that does not chain to the stored
hash is not applied. It is handled as a gap is: parked as its flag's blocker (EventOutOfOrder),
the flag's later events held behind it, the checkpoint moved past it; never silently dropped."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from core.evolve import replay
from events.deadletters import DeadLetterFilter, DeadLetterStore
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import Chain, wire_projector

pytestmark = pytest.mark.integration


async def test_chain__right_version_wrong_prev_hash__parked_as_blocker_not_applied(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    chain, forger = Chain(), Chain()
    created = chain.create(flag_doc("k", "production"))
    forger.create(flag_doc("k", "production", "staging"))  # another v1: another hash
    forged = forger.configure("k", "production", on_config(True))  # v2 chained to the other v1
    after = forger.configure("k", "production", on_config(False))  # v3 behind it
    await publish(kafka_bootstrap, topic, [created, forged, after])
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def passed() -> bool:
            return await wired.model.checkpoint(wired.projector.group, topic, 0) == 3

        await wired.projector.run_until(passed, within=30)
    finally:
        await wired.projector.stop()
    letters = (await dlq.list(DeadLetterFilter(stage="projector", status=None))).items
    blocker = [letter for letter in letters if letter.version == 2]
    assert [(b.flag_key, b.error_class) for b in blocker] == [("k", "EventOutOfOrder")], letters
    assert await wired.model.load_flag_state("k") == replay([created])
    assert await dlq.blocked_flags("projector") == {"k"}
