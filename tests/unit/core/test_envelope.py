"""The envelope's hash chain: sealing, canonical JSON, and verify_chain's first broken link."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from core.envelope import GENESIS_HASH, Event, EventDraft, canonical_json, format_instant, seal, verify_chain
from tests.unit.core._streams import T0, seal_next


def chain(length: int, stream: str = "f") -> list[Event]:
    events: list[Event] = []
    prev = GENESIS_HASH
    for version in range(1, length + 1):
        event = seal_next(
            EventDraft(type="FlagEnabled", environment="production", payload={"n": version}),
            stream,
            version,
            prev,
        )
        events.append(event)
        prev = event.hash
    return events


def tampered(event: Event, **changes: object) -> Event:
    fields = json.loads(event.to_json())
    fields.update(changes)
    return Event.model_validate(fields)


def test_verify_chain__whole_chain__returns_none() -> None:
    assert verify_chain(chain(4)) is None
    assert verify_chain([]) is None


def test_verify_chain__payload_edited__reports_tampered_at_that_version() -> None:
    events = chain(3)
    events[1] = tampered(events[1], payload={"n": 99})
    broken = verify_chain(events)
    assert broken is not None and (broken.problem, broken.version) == ("tampered", 2)


def test_verify_chain__event_missing__reports_gap_at_missing_version() -> None:
    events = chain(4)
    del events[1]
    broken = verify_chain(events)
    assert broken is not None and (broken.problem, broken.version, broken.event_id) == ("gap", 2, None)


def test_verify_chain__event_repeated__reports_duplicate() -> None:
    events = chain(3)
    events.insert(2, events[1])
    broken = verify_chain(events)
    assert broken is not None and (broken.problem, broken.version) == ("duplicate", 2)


def test_verify_chain__event_resealed_with_wrong_prev_hash__reports_broken_link() -> None:
    events = chain(3)
    draft = EventDraft(type="FlagEnabled", environment="production", payload={"n": 3})
    events[2] = seal_next(draft, "f", 3, "a" * 64)  # intact on its own, but not linked to version 2
    broken = verify_chain(events)
    assert broken is not None and (broken.problem, broken.version) == ("broken_link", 3)


def test_verify_chain__event_of_other_stream__reports_wrong_stream() -> None:
    events = chain(2)
    other = chain(2, stream="g")
    broken = verify_chain([events[0], other[1]])
    assert broken is not None and broken.problem == "wrong_stream"
    broken = verify_chain(other, flag_key="f")
    assert broken is not None and broken.problem == "wrong_stream"


def test_to_json__sealed_event__round_trips_and_stays_intact() -> None:
    event = chain(1)[0]
    again = Event.from_json(event.to_json())
    assert again == event and again.is_intact()
    assert again.to_json() == event.to_json()
    assert '"occurred_at":"2026-01-01T00:00:01.000000Z"' in event.to_json()


def test_seal__non_utc_instant__is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = seal(
        EventDraft(type="FlagArchived"),
        event_id=UUID(int=1),
        flag_key="f",
        version=1,
        prev_hash=GENESIS_HASH,
        occurred_at=datetime(2026, 1, 1, 1, tzinfo=paris),
        actor="a",
    )
    assert event.occurred_at == T0 and event.is_intact()


def test_format_instant__naive_datetime__is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_instant(datetime(2026, 1, 1))  # noqa: DTZ001


def test_canonical_json__keys__sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
