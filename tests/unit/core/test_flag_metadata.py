"""Flag metadata: a small typed map (strings, numbers, booleans), bounded, set at creation and
changed by ``UpdateFlagMetadata`` (a ``FlagMetadataUpdated`` event), left out of dumps while empty."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from core.commands import CreateFlag, UpdateFlagMetadata
from core.errors import InvalidConfiguration
from core.events import EventType, read_payload
from core.evolve import replay
from core.fastfold import flag_state, fold_flag_events
from core.model import MAX_METADATA_ENTRIES, Flag
from tests.unit.core._streams import FlagStream

KEY = "checkout"


def _stream(metadata: dict[str, Any] | None = None) -> FlagStream:
    stream = FlagStream(KEY)
    stream.run(CreateFlag(flag_key=KEY, flag=Flag(key=KEY, metadata=metadata or {})))
    return stream


def _loc_of(error: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


def test_flag__metadata_of_each_allowed_type__kept_as_given() -> None:
    metadata = {"team": "checkout", "ticket": 12, "ratio": 0.25, "beta": True}

    flag = Flag(key=KEY, metadata=metadata)

    assert flag.metadata == metadata
    assert [type(v) for v in flag.metadata.values()] == [str, int, float, bool]


def test_flag__no_metadata__left_out_of_the_dump_so_old_json_is_unchanged() -> None:
    assert "metadata" not in Flag(key=KEY).model_dump(mode="json")
    assert Flag(key=KEY, metadata={"a": 1}).model_dump(mode="json")["metadata"] == {"a": 1}


@pytest.mark.parametrize(
    ("metadata", "loc", "message"),
    [
        ({"a": None}, ("metadata", "a"), "strings, numbers or booleans"),
        ({"a": [1]}, ("metadata", "a"), "strings, numbers or booleans"),
        ({"a": {"b": 1}}, ("metadata", "a"), "strings, numbers or booleans"),
        ({"a": float("inf")}, ("metadata", "a"), "finite"),
        ({"a": "x" * 1025}, ("metadata", "a"), "1024"),
        ({"": "x"}, ("metadata", "", "[key]"), "at least 1"),
        ({"k" * 129: "x"}, ("metadata", "k" * 129, "[key]"), "at most 128"),
        ({str(i): i for i in range(MAX_METADATA_ENTRIES + 1)}, ("metadata",), "at most 32"),
    ],
    ids=["null", "array", "object", "infinite", "long-text", "empty-key", "long-key", "too-many"],
)
def test_flag__metadata_out_of_bounds__refused_at_its_path(
    metadata: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Flag(key=KEY, metadata=metadata)

    assert _loc_of(caught.value) == [loc]
    assert message in caught.value.errors()[0]["msg"]


def test_flag__metadata_at_the_bounds__accepted() -> None:
    metadata = {str(i) * 128 if i == 0 else str(i): "x" * 1024 for i in range(MAX_METADATA_ENTRIES)}

    assert len(Flag(key=KEY, metadata=metadata).metadata) == MAX_METADATA_ENTRIES


def test_create__with_metadata__the_created_event_carries_it() -> None:
    stream = _stream({"team": "a"})

    assert stream.state.flag is not None and stream.state.flag.metadata == {"team": "a"}
    assert json.loads(stream.events[0].to_json())["payload"]["flag"]["metadata"] == {"team": "a"}


def test_update_metadata__new_map__emits_changes_and_replaces_the_whole_map() -> None:
    stream = _stream({"team": "a", "tier": 1})

    (event,) = stream.run(UpdateFlagMetadata(flag_key=KEY, metadata={"team": "b"}))

    payload = read_payload(event)
    assert event.type == EventType.FLAG_METADATA_UPDATED
    assert payload.changes == {"metadata": {"team": "b"}}  # type: ignore[attr-defined]
    assert {c.path for c in payload.diff} == {"metadata.team", "metadata.tier"}  # type: ignore[attr-defined]
    assert stream.state.flag is not None and stream.state.flag.metadata == {"team": "b"}


def test_update_metadata__empty_map__clears_it() -> None:
    stream = _stream({"team": "a"})

    stream.run(UpdateFlagMetadata(flag_key=KEY, metadata={}))

    assert stream.state.flag is not None and stream.state.flag.metadata == {}


def test_update_metadata__same_map__is_a_no_op() -> None:
    stream = _stream({"team": "a"})

    assert stream.run(UpdateFlagMetadata(flag_key=KEY, metadata={"team": "a"})) == []


def test_update_metadata__left_out__metadata_unchanged() -> None:
    stream = _stream({"team": "a"})

    stream.run(UpdateFlagMetadata(flag_key=KEY, name="Checkout"))

    assert stream.state.flag is not None and stream.state.flag.metadata == {"team": "a"}


def test_update_metadata__invalid_value__refused_by_the_command_with_its_path() -> None:
    with pytest.raises(ValidationError) as caught:
        UpdateFlagMetadata.model_validate({"flag_key": KEY, "metadata": {"team": ["a"]}})

    assert _loc_of(caught.value) == [("metadata", "team")]


def test_update_metadata__invalid_value_past_the_command__invalid_configuration_nothing_emitted() -> None:
    stream = _stream({"team": "a"})
    invalid: dict[str, Any] = {"team": None}
    command = UpdateFlagMetadata.model_construct(flag_key=KEY, metadata=invalid)
    command.model_fields_set.add("metadata")

    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(command)

    assert [d["path"] for d in caught.value.details] == ["metadata.team"]
    assert len(stream.events) == 1


def test_metadata_events__fast_fold_and_replay__agree() -> None:
    stream = _stream({"team": "a"})
    stream.run(UpdateFlagMetadata(flag_key=KEY, metadata={"team": "b", "n": 2}))
    stream.run(UpdateFlagMetadata(flag_key=KEY, metadata={}))
    parsed = [json.loads(e.to_json()) for e in stream.events]

    folded = flag_state(fold_flag_events(parsed, KEY))

    assert folded == replay(stream.events) == stream.state
    assert folded.flag is not None and folded.flag.metadata == {}
