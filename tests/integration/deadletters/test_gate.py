"""A stage's gate end to end on real Postgres: a projector-like ``apply`` that refuses poison,
the flag blocked behind it, other flags flowing, and everything applied in version order once
the poison is redriven with a fixed build (or purged)."""

from __future__ import annotations

import pytest
import redis.exceptions as redis_errors

from core.envelope import Event
from core.errors import MalformedEvent
from events.deadletters import DeadLetterFilter, DeadLetterGate, DeadLetterStore, KafkaCoordinates
from events.resilience import CircuitOpen
from tests.integration.deadletters._letters import an_event

pytestmark = pytest.mark.integration


class Stage:
    """Applies events in memory; refuses those whose ``(flag, version)`` is in ``poison``."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, int]] = []
        self.poison: set[tuple[str, int]] = set()
        self.down: BaseException | None = None

    async def apply(self, event: Event) -> None:
        if self.down is not None:
            raise self.down
        if (event.flag_key, event.version) in self.poison:
            raise MalformedEvent(f"cannot apply {event.flag_key} v{event.version}")
        self.applied.append((event.flag_key, event.version))


def _stream(*keys: tuple[str, int]) -> list[Event]:
    return [an_event(flag, version) for flag, version in keys]


async def test_gate__poison__flag_waits_others_flow_then_redrive_applies_in_order(
    store: DeadLetterStore,
) -> None:
    gate, stage = DeadLetterGate(store, "projector"), Stage()
    stage.poison = {("a", 2)}
    events = _stream(("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("a", 4), ("b", 3))
    await gate.refresh()
    outcomes = [await gate.process(e, stage.apply) for e in events]
    assert outcomes == ["done", "done", "parked", "done", "waiting", "waiting", "done"]
    assert stage.applied == [("a", 1), ("b", 1), ("b", 2), ("b", 3)]
    assert await store.blocked_flags("projector") == {"a"}

    # nothing passes while the blocker is parked
    assert (await gate.release(stage.apply)).processed == 0

    # a fixed build is deployed, the operator redrives the poison
    stage.poison.clear()
    [blocker] = (await store.list(DeadLetterFilter(error_class="MalformedEvent"))).items
    await store.mark_redriven(blocker.id, by="ops-bob")
    report = await gate.release(stage.apply)
    assert (report.processed, report.parked) == (3, 0)
    assert stage.applied[4:] == [("a", 2), ("a", 3), ("a", 4)]
    assert not await gate.is_blocked("a")
    assert await gate.process(an_event("a", 5), stage.apply) == "done"


async def test_gate__poison_purged__waiting_events_applied_without_it(store: DeadLetterStore) -> None:
    gate, stage = DeadLetterGate(store, "relay"), Stage()
    stage.poison = {("a", 1)}
    for event in _stream(("a", 1), ("a", 2), ("a", 3)):
        await gate.process(event, stage.apply)
    [blocker] = (await store.list(DeadLetterFilter(error_class="MalformedEvent"))).items
    await store.mark_purged(blocker.id, by="admin", reason="never valid")
    assert (await gate.release(stage.apply)).processed == 2
    assert stage.applied == [("a", 2), ("a", 3)]
    assert await store.blocked_flags("relay") == set()


async def test_gate__redriven_still_poison__parked_again_rest_keeps_waiting(store: DeadLetterStore) -> None:
    gate, stage = DeadLetterGate(store, "projector"), Stage()
    stage.poison = {("a", 1)}
    for event in _stream(("a", 1), ("a", 2)):
        await gate.process(event, stage.apply)
    [blocker] = (await store.list(DeadLetterFilter(error_class="MalformedEvent"))).items
    await store.mark_redriven(blocker.id, by="ops")
    report = await gate.release(stage.apply)
    assert (report.processed, report.parked) == (0, 1)
    assert stage.applied == []
    [again] = (await store.list(DeadLetterFilter(error_class="MalformedEvent"))).items
    assert again.id != blocker.id and again.attempts == 2
    assert (await store.get(blocker.id)).reprocessed_at is not None
    assert await gate.is_blocked("a")


async def test_gate__waiting_event_turns_out_poison__becomes_the_blocker(store: DeadLetterStore) -> None:
    gate, stage = DeadLetterGate(store, "projector"), Stage()
    stage.poison = {("a", 1), ("a", 2)}
    for event in _stream(("a", 1), ("a", 2), ("a", 3)):
        await gate.process(event, stage.apply)
    [blocker] = (await store.list(DeadLetterFilter(flag_key="a", error_class="MalformedEvent"))).items
    await store.mark_purged(blocker.id, by="ops", reason="v1 obsolete")
    report = await gate.release(stage.apply)
    assert (report.processed, report.parked) == (0, 1)
    parked = (await store.list(DeadLetterFilter(flag_key="a"))).items
    assert [(lt.version, lt.is_blocker) for lt in parked] == [(2, True), (3, False)]


async def test_gate__dependency_down__error_propagates_nothing_parked(store: DeadLetterStore) -> None:
    gate, stage = DeadLetterGate(store, "projector"), Stage()
    for down in (redis_errors.ConnectionError("Connection refused"), CircuitOpen("redis", 4.0)):
        stage.down = down
        with pytest.raises(type(down)):
            await gate.process(an_event("a", 1), stage.apply)
    assert (await store.list()).items == []
    assert not await gate.is_blocked("a")


async def test_gate__unreadable_record__parked_raw_flag_blocked_then_released_when_readable(
    store: DeadLetterStore,
) -> None:
    gate, stage = DeadLetterGate(store, "projector"), Stage()
    event = an_event("a", 1)
    kafka = KafkaCoordinates("flagstream.flag-events", 0, 12)
    letter = await gate.park_record(
        event.to_json().encode(), ValueError("schema v9"), flag_key="a", kafka=kafka
    )
    assert await gate.process(an_event("a", 2), stage.apply) == "waiting"
    await store.mark_redriven(letter.id, by="ops")  # a build that reads it is deployed
    assert (await gate.release(stage.apply)).processed == 2
    assert stage.applied == [("a", 1), ("a", 2)]


async def test_gate__replay_from_the_start__versions_below_the_blocker_pass_later_ones_wait(
    store: DeadLetterStore,
) -> None:
    """A flag blocked at v3 (v4 waiting); the stage reads its log again from the start (a rewind, a
    wiped read model, a republish): v1 and v2 are applied, v3 and v4 stay letters, no new letter."""
    stage, gate = Stage(), DeadLetterGate(store, "projector")
    stage.poison.add(("checkout", 3))
    events = _stream(("checkout", 1), ("checkout", 2), ("checkout", 3), ("checkout", 4))
    assert [await gate.process(e, stage.apply) for e in events] == ["done", "done", "parked", "waiting"]
    stage.applied.clear()

    again = [await DeadLetterGate(store, "projector").process(e, stage.apply) for e in events]

    assert again == ["done", "done", "waiting", "waiting"]
    assert stage.applied == [("checkout", 1), ("checkout", 2)]
    page = await store.list(DeadLetterFilter(stage="projector", flag_key="checkout"))
    assert sorted((lt.version, lt.error_class) for lt in page.items) == [
        (3, "MalformedEvent"), (4, "WaitingBehindDeadLetter")
    ]
    assert (await store.blockers("projector")).floor("checkout") == 3
