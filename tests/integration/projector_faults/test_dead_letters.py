"""Poison events at the projector: parked, their flag blocked, other flags flowing; redrive after
a fixed build, purge then held events, and the streams the projector does not project."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.events import FlagEnabledPayload
from core.evolve import replay
from events.deadletters import WAITING, DeadLetter, DeadLetterFilter, DeadLetterStore
from events.deadletters.operations import RedriverRegistry
from projections.deadletters import ProjectorRedriver, redrive_projector_letters
from projections.documents import decode_env_doc
from projections.projector import Projector
from projections.readmodel import RedisReadModel
from tests.integration.projections.kafka_helpers import publish
from tests.integration.projections.streams import flag_doc, on_config
from tests.integration.projector_faults._scenario import RULE, Chain, Poisoned, Wired, wire_projector

pytestmark = pytest.mark.integration


async def _letters(dlq: DeadLetterStore, **filters: object) -> list[DeadLetter]:
    page = await dlq.list(DeadLetterFilter(stage="projector", **filters), limit=100)  # type: ignore[arg-type]
    return page.items


async def _checkpoint(model: RedisReadModel, projector: Projector) -> int | None:
    return await model.checkpoint(projector.group, projector.topic, 0)


@pytest.fixture
async def poisoned(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> AsyncIterator[tuple[Poisoned, Wired]]:
    """The poisoned topic projected until the checkpoint passed every record."""
    scenario = Poisoned()
    records = scenario.records()
    await publish(kafka_bootstrap, topic, records, key=b"c")
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def passed_all() -> bool:
            return await _checkpoint(wired.model, wired.projector) == len(records)

        await wired.projector.run_until(passed_all, within=30)
        yield scenario, wired
    finally:
        await wired.projector.stop()


async def test_poison__unknown_schema_and_unparseable__parked_flags_blocked_others_flow(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore
) -> None:
    scenario, wired = poisoned
    assert (await wired.model.load_flag_state("a")).version == 2
    assert await wired.model.load_flag_state("b") == replay(scenario.b)
    letters = {(lt.flag_key, lt.version): lt for lt in await _letters(dlq)}
    assert set(letters) == {("a", 3), ("a", 4), ("c", None)}
    blocker, held, raw = letters[("a", 3)], letters[("a", 4)], letters[("c", None)]
    assert blocker.error_class == "UnsupportedSchemaVersion" and blocker.is_blocker
    assert blocker.event_body == scenario.a[2].to_json()
    assert blocker.kafka is not None and (blocker.kafka.topic, blocker.kafka.offset) == (
        wired.projector.topic,
        3,
    )
    assert held.error_class == WAITING and held.kafka is not None and held.kafka.offset == 4
    assert (
        raw.raw_record == b"not json" and raw.is_blocker and raw.kafka is not None and raw.kafka.offset == 5
    )
    assert await dlq.blocked_flags("projector") == {"a", "c"}


async def test_redrive__same_build__stays_parked_and_holds_the_rest(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore
) -> None:
    _, wired = poisoned
    report = await redrive_projector_letters(dlq, wired.model, flag_key="a", by="ops")
    assert (report.processed, report.parked) == (0, 2)  # v3 failed again, v4 held behind it
    assert "a" in report.still_blocked
    assert (await wired.model.load_flag_state("a")).version == 2
    parked = await _letters(dlq, flag_key="a")
    assert sorted((lt.version, lt.is_blocker) for lt in parked) == [(3, True), (4, False)]


async def test_redrive__fixed_build__applies_in_version_order_and_flag_flows_again(
    poisoned: tuple[Poisoned, Wired],
    dlq: DeadLetterStore,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario, wired = poisoned
    monkeypatch.setattr(FlagEnabledPayload, "schema_version", 2)  # the fixed build reads schema 2
    report = await redrive_projector_letters(dlq, wired.model, flag_key="a", by="ops")
    assert (report.processed, report.parked) == (2, 0)
    assert "a" not in report.still_blocked
    assert await wired.model.load_flag_state("a") == replay(scenario.a)
    assert await _letters(dlq, flag_key="a") == []
    done = await _letters(dlq, flag_key="a", status="redriven")
    assert sorted(lt.version or 0 for lt in done if lt.reprocessed_at is not None) == [3, 4]
    # the running projector notices: a later event of "a" is projected, not held
    v5 = scenario.chain.configure("a", "production", on_config(False))
    await publish(kafka_bootstrap, wired.projector.topic, [v5])

    async def projected() -> bool:
        return (await wired.model.load_flag_state("a")).version == 5

    await wired.projector.run_until(projected, within=20)
    assert await wired.model.load_flag_state("a") == replay([*scenario.a, v5])
    assert "a" not in await dlq.blocked_flags("projector")


async def test_purge__blocker__held_event_bridged_and_flag_flows_again(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore, client: Redis, kafka_bootstrap: str
) -> None:
    scenario, wired = poisoned
    (blocker,) = [lt for lt in await _letters(dlq, flag_key="a") if lt.is_blocker]
    await dlq.mark_purged(blocker.id, by="admin", reason="written by a retired producer")
    await wired.hooks.maintain(force=True)  # what the running projector does every refresh_interval
    state = await wired.model.load_flag_state("a")
    assert state.version == 4
    assert state.flag is not None and state.flag.environments["production"] == on_config(True, rules=RULE)
    doc = await client.hget(wired.model.keys.env_flags("production"), "a")
    assert doc is not None and decode_env_doc(doc)[0] == 4
    assert await dlq.blocked_flags("projector") == {"c"}
    v5 = scenario.chain.configure("a", "production", on_config(False))
    await publish(kafka_bootstrap, wired.projector.topic, [v5])

    async def projected() -> bool:
        return (await wired.model.load_flag_state("a")).version == 5

    await wired.projector.run_until(projected, within=20)


async def test_skipped_streams__incident_ops_alert__checkpoint_advances_nothing_projected_or_parked(
    client: Redis, dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    chain = Chain()
    skipped = [
        chain.next("incident:42", "IncidentRecorded", {"anything": 1}),
        chain.next("ops:dead-letters", "DeadLetterPurged", {"whatever": True}),
        chain.next("alert:fp-1", "MetricAlertFired", {}),
    ]
    flag = chain.create(flag_doc("x", "production"))
    await publish(kafka_bootstrap, topic, [*skipped, flag])
    wired = wire_projector(client, dlq, kafka_bootstrap, topic)
    await wired.projector.start()
    try:

        async def passed_all() -> bool:
            return await _checkpoint(wired.model, wired.projector) == 4

        await wired.projector.run_until(passed_all, within=30)
    finally:
        await wired.projector.stop()
    assert await _letters(dlq, status=None) == []
    for event in skipped:
        assert await client.exists(wired.model.keys.state(event.flag_key)) == 0
    assert (await wired.model.load_flag_state("x")).version == 1
    assert wired.projector.applied == 1


async def test_redriver__api_redrive_while_projector_releases__each_event_applied_once(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore, client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario, wired = poisoned
    monkeypatch.setattr(FlagEnabledPayload, "schema_version", 2)
    (blocker,) = [lt for lt in await _letters(dlq, flag_key="a") if lt.is_blocker]
    rev_before = int(await client.get(wired.model.keys.env_rev("production")) or 0)
    await dlq.mark_redriven(blocker.id, by="ops")  # what the API does before calling the redriver
    freed = [lt for lt in await dlq.releasable("projector") if lt.flag_key == "a"]
    registry = RedriverRegistry({"projector": ProjectorRedriver(dlq, wired.model)})  # as api/container.py
    redriver = registry.get("projector")
    assert redriver is not None
    reprocessed, _ = await asyncio.gather(redriver(freed), wired.hooks.maintain(force=True))
    assert 0 <= reprocessed <= 2
    assert await wired.model.load_flag_state("a") == replay(scenario.a)
    assert int(await client.get(wired.model.keys.env_rev("production")) or 0) == rev_before + 2
    assert "a" not in await dlq.blocked_flags("projector")


async def test_purge__read_model_wiped_and_rebuilt__purged_record_skipped_not_parked_again(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore, client: Redis, kafka_bootstrap: str
) -> None:
    scenario, wired = poisoned
    (blocker,) = [lt for lt in await _letters(dlq, flag_key="a") if lt.is_blocker]
    await dlq.mark_purged(blocker.id, by="admin", reason="written by a retired producer")
    await wired.hooks.maintain(force=True)
    bridged = await wired.model.load_flag_state("a")
    await client.flushdb()  # Redis lost everything: the next record shows it, the projector rewinds
    b3 = scenario.chain.configure("b", "production", on_config(False))
    await publish(kafka_bootstrap, wired.projector.topic, [b3])
    expected_b = replay([*scenario.b, b3])

    async def rebuilt() -> bool:
        state_a = await wired.model.load_flag_state("a")
        return state_a == bridged and await wired.model.load_flag_state("b") == expected_b

    await wired.projector.run_until(rebuilt, within=30)
    assert [(lt.flag_key, lt.version) for lt in await _letters(dlq)] == [("c", None)]
    assert "a" not in await dlq.blocked_flags("projector")


async def test_blocked_flag__already_projected_events_redelivered__skipped_not_held(
    poisoned: tuple[Poisoned, Wired], dlq: DeadLetterStore, kafka_bootstrap: str, topic: str
) -> None:
    """Given flag a blocked at v3 with v1-v2 projected, when v1 and v2 arrive again (a redelivery, or a
    rewind after a rebalance), they are duplicates: the checkpoint passes them and no letter is added."""
    scenario, wired = poisoned
    before = {(lt.flag_key, lt.version) for lt in await _letters(dlq)}

    await publish(kafka_bootstrap, topic, [scenario.a[0], scenario.a[1]])
    total = len(scenario.records()) + 2

    async def passed_redeliveries() -> bool:
        return await _checkpoint(wired.model, wired.projector) == total

    await wired.projector.run_until(passed_redeliveries, within=30)
    assert (
        {(lt.flag_key, lt.version) for lt in await _letters(dlq)}
        == before
        == {("a", 3), ("a", 4), ("c", None)}
    )
    assert (await wired.model.load_flag_state("a")).version == 2
