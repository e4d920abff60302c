"""``core.fastfold`` folds parsed JSON exactly as ``core.evolve`` folds validated events.

The main property reuses the random command sequences of ``test_replay_properties`` (decide,
seal, evolve — the command service's way): after every event, the fast fold of the events' JSON,
validated once, equals the state ``evolve`` built; and the folded flag is already the flag's JSON
(so documents built from it need no model round trip).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.commands import ArchiveSegment, CreateFlag, CreateSegment, UpdateSegment
from core.envelope import Event, EventDraft
from core.errors import EventOutOfOrder, MalformedEvent, UnknownEventType
from core.evolve import replay, replay_segment
from core.fastfold import (
    empty_flag_state,
    flag_state,
    fold_flag,
    fold_flag_events,
    fold_segment_events,
    segment_state,
)
from core.model import Segment
from tests.unit.core._streams import FlagStream, SegmentStream, seal_next
from tests.unit.core.test_replay_properties import INITIAL, KEY, commands, run


def _parsed(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.to_json()) for e in events]


def _stream_after(sequence: list[Any]) -> FlagStream:
    stream = FlagStream(KEY)
    stream.run(CreateFlag(flag_key=KEY, flag=INITIAL))
    for command in sequence:
        run(stream, command)
    return stream


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(commands, min_size=5, max_size=40))
def test_fold_flag__random_command_sequence__equals_replay_after_every_event(sequence: list[Any]) -> None:
    stream = _stream_after(sequence)
    state = empty_flag_state(KEY)
    for n, event in enumerate(_parsed(stream.events), start=1):
        state = fold_flag(state, event)
        expected = replay(stream.events[:n])
        assert flag_state(state) == expected
        assert state["flag"] == expected.model_dump(mode="json")["flag"]
        assert state["env_versions"] == expected.env_versions
    assert flag_state(fold_flag_events(_parsed(stream.events), KEY)) == stream.state


@settings(max_examples=30, derandomize=True, deadline=None)
@given(st.lists(commands, min_size=5, max_size=20))
def test_fold_flag__events_and_state__are_not_mutated(sequence: list[Any]) -> None:
    parsed = _parsed(_stream_after(sequence).events)
    pristine = copy.deepcopy(parsed)
    states = [empty_flag_state(KEY)]
    for event in parsed:
        states.append(fold_flag(states[-1], event))
    snapshots = copy.deepcopy(states)
    fold_flag_events(parsed, KEY)
    assert parsed == pristine
    assert states == snapshots


def test_fold_segment__create_update_archive__equals_replay_segment() -> None:
    stream = SegmentStream("beta")
    stream.run(CreateSegment(segment_key="beta", segment=Segment(key="beta", included=("u1",))))
    stream.run(UpdateSegment(segment_key="beta", segment=Segment(key="beta", name="Beta", included=("u2",))))
    stream.run(ArchiveSegment(segment_key="beta"))
    for n in range(1, len(stream.events) + 1):
        folded = fold_segment_events(_parsed(stream.events[:n]), "beta")
        assert segment_state(folded) == replay_segment(stream.events[:n], "beta")


def _created() -> Event:
    return FlagStream(KEY).run(CreateFlag(flag_key=KEY, flag=INITIAL))[0]


def test_fold_flag__older_schema_version__goes_through_evolve_and_upcasts() -> None:
    created = _created()
    old = EventDraft(type="RollbackSkipped", schema_version=1, environment="production",
                     payload={"environment": "production", "reason": "cooldown", "alert_fingerprint": "fp"})
    skipped = seal_next(old, KEY, 2, created.hash)
    folded = fold_flag_events(_parsed([created, skipped]), KEY)
    assert flag_state(folded) == replay([created, skipped])
    assert folded["version"] == 2 and folded["last_hash"] == skipped.hash


def test_fold_flag__unknown_type__raises_the_cores_error() -> None:
    created = _created()
    strange = seal_next(EventDraft(type="FlagTeleported"), KEY, 2, created.hash)
    with pytest.raises(UnknownEventType):
        fold_flag_events(_parsed([created, strange]), KEY)


def test_fold_flag__version_not_next__raises_event_out_of_order() -> None:
    created = json.loads(_created().to_json())
    with pytest.raises(EventOutOfOrder):
        fold_flag({**empty_flag_state(KEY), "version": 3}, created)


@pytest.mark.parametrize(
    ("state_of", "event_of"),
    [
        # created twice
        (lambda c: fold_flag(empty_flag_state(KEY), c),
         lambda c: {**c, "version": 2}),
        # a change to a flag that does not exist
        (lambda c: empty_flag_state(KEY),
         lambda c: {**c, "type": "FlagArchived", "payload": {}}),
        # an environment change without an environment
        (lambda c: fold_flag(empty_flag_state(KEY), c),
         lambda c: {**c, "type": "FlagEnabled", "version": 2, "environment": None,
                    "payload": {"config": {}}}),
        # an event of another stream
        (lambda c: empty_flag_state(KEY),
         lambda c: {**c, "flag_key": "other"}),
        # metadata changes of a non-metadata field
        (lambda c: fold_flag(empty_flag_state(KEY), c),
         lambda c: {**c, "type": "FlagMetadataUpdated", "version": 2, "payload": {"changes": {"key": "x"}}}),
        # a payload without the item the type needs
        (lambda c: fold_flag(empty_flag_state(KEY), c),
         lambda c: {**c, "type": "RolloutChanged", "version": 2, "environment": "production", "payload": {}}),
    ],
)
def test_fold_flag__malformed_event__raises_malformed_event(state_of: Any, event_of: Any) -> None:
    created = json.loads(_created().to_json())
    with pytest.raises(MalformedEvent):
        fold_flag(state_of(created), event_of(created))
