"""The fault checker catches what it claims to catch (pure: synthetic histories, no servers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from core.evolve import replay
from core.model import Flag
from tests.faults.checker import KafkaRecord, Observation, check
from tests.faults.load import CommandRecord, make_config

_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(key: str, version: int, prev: str, event_type: str, payload: dict[str, Any]) -> Event:
    draft = EventDraft(
        type=event_type, schema_version=1, environment=None if version == 1 else "production", payload=payload
    )
    return seal(
        draft,
        event_id=uuid.uuid4(),
        flag_key=key,
        version=version,
        prev_hash=prev,
        occurred_at=_T0 + timedelta(seconds=version),
        actor="tester",
    )


def _stream(key: str, length: int) -> list[Event]:
    flag = Flag(key=key, name=key).model_dump(mode="json", by_alias=True)
    events = [_event(key, 1, GENESIS_HASH, "FlagCreated", {"flag": flag})]
    for version in range(2, length + 1):
        payload = {"config": make_config(version, enabled=version % 2 == 0), "diff": []}
        events.append(_event(key, version, events[-1].hash, "EnvironmentConfigured", payload))
    return events


def _kafka(events: list[Event], partition: int = 0) -> list[KafkaRecord]:
    return [KafkaRecord(partition, offset, e.flag_key, e) for offset, e in enumerate(events)]


def _ack(event: Event) -> CommandRecord:
    return CommandRecord(
        0,
        "put",
        event.flag_key,
        "production",
        0.0,
        outcome="ok",
        status=200,
        version=event.version,
        event_ids=[str(event.event_id)],
    )


def _observe(events: list[Event], kafka: list[Event] | None = None, **redis_update: Any) -> Observation:
    state = replay(events).model_copy(update=redis_update)
    return Observation({"a": events}, _kafka(events if kafka is None else kafka), {"a": state})


def test_check__consistent_stores__ok() -> None:
    events = _stream("a", 4)

    result = check([_ack(e) for e in events[1:]], _observe(events))

    assert result.ok, result.violations
    assert (result.lost, result.duplicated, result.redeliveries) == (0, 0, 0)


def test_check__acknowledged_event_missing_from_postgres__counted_lost() -> None:
    events = _stream("a", 4)
    phantom = _stream("a", 5)[4]  # acknowledged, but never stored

    result = check([_ack(phantom)], _observe(events))

    assert result.lost == 1
    assert not result.ok


def test_check__kafka_redelivers_an_earlier_event__allowed_and_counted() -> None:
    events = _stream("a", 3)

    result = check([], _observe(events, kafka=[events[0], events[1], events[0], events[1], events[2]]))

    assert result.ok, result.violations
    assert result.redeliveries == 2


def test_check__kafka_gap__violation() -> None:
    events = _stream("a", 3)

    result = check([], _observe(events, kafka=[events[0], events[2]]))

    assert any("gap or reorder" in v for v in result.violations)


def test_check__kafka_reorder__violation() -> None:
    events = _stream("a", 3)

    result = check([], _observe(events, kafka=[events[0], events[2], events[1]]))

    assert any("gap or reorder" in v for v in result.violations)


def test_check__kafka_holds_another_event_at_a_version__violation() -> None:
    events, forged = _stream("a", 3), _stream("a", 3)

    result = check([], _observe(events, kafka=[events[0], events[1], forged[2]]))

    assert any("not the event postgres holds" in v for v in result.violations)


def test_check__kafka_incomplete__violation() -> None:
    events = _stream("a", 3)

    result = check([], _observe(events, kafka=events[:2]))

    assert any("holds v1..v2, postgres v3" in v for v in result.violations)


def test_check__flag_spread_over_partitions__violation() -> None:
    events = _stream("a", 2)
    observation = Observation(
        {"a": events}, [*_kafka(events[:1], 0), KafkaRecord(1, 0, "a", events[1])], {"a": replay(events)}
    )

    result = check([], observation)

    assert any("spread over partitions" in v for v in result.violations)


def test_check__redis_differs_at_the_same_version__counted_duplicated() -> None:
    events = _stream("a", 3)

    result = check([], _observe(events, env_versions={"production": 99}))

    assert result.duplicated == 1


def test_check__redis_behind__not_caught_up_but_not_duplicated() -> None:
    events = _stream("a", 3)
    observation = Observation({"a": events}, _kafka(events), {"a": replay(events[:2])})

    result = check([], observation)

    assert (result.behind, result.duplicated) == (1, 0)
    assert not result.ok


def test_check__excluded_flag__redis_not_compared() -> None:
    events = _stream("a", 3)
    observation = Observation({"a": events}, _kafka(events), {"a": replay(events[:1])})

    assert check([], observation, exclude=["a"]).ok


def test_check__postgres_chain_broken__violation() -> None:
    events = _stream("a", 3)
    broken = [*events[:2], _event("a", 3, GENESIS_HASH, "FlagEnabled", {"config": {}, "diff": []})]
    observation = Observation({"a": broken}, None, {"a": replay(events)})

    result = check([], observation)

    assert any(v.startswith("postgres a: broken_link") for v in result.violations)
