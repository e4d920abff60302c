"""evolve(): total and deterministic; every event it cannot apply is a clear error."""

from __future__ import annotations

import pytest

from core.commands import ArchiveFlag, CreateFlag, EnableFlag, SetEnvironmentConfig
from core.envelope import GENESIS_HASH, EventDraft
from core.errors import EventOutOfOrder, MalformedEvent, UnknownEventType
from core.events import (
    EnvironmentConfiguredPayload,
    FlagCreatedPayload,
    SegmentArchivedPayload,
    SegmentCreatedPayload,
    to_draft,
)
from core.evolve import config_at, environment_changes_after, evolve, evolve_segment, replay
from core.model import EnvironmentConfig, Flag, Segment
from core.state import FlagState, SegmentState
from tests.unit.core._streams import T0, FlagStream, seal_next

CONFIG = EnvironmentConfig.model_validate({"default": {"variation": "off"}})


def created(flag: Flag | None = None) -> FlagStream:
    stream = FlagStream("f")
    stream.run(CreateFlag(flag_key="f", flag=flag or Flag(key="f")))
    return stream


def test_evolve__flag_created__sets_version_hash_time_and_env_versions() -> None:
    flag = Flag.model_validate({"key": "f", "environments": {"production": {}, "staging": {}}})
    stream = created(flag)
    [event] = stream.events
    assert stream.state == FlagState(
        key="f",
        version=1,
        last_hash=event.hash,
        flag=flag,
        env_versions={"production": 1, "staging": 1},
        updated_at=event.occurred_at,
    )


def test_evolve__environment_event__updates_only_that_environment_version() -> None:
    stream = created()
    stream.run(SetEnvironmentConfig(flag_key="f", environment="production", config=CONFIG))
    stream.run(SetEnvironmentConfig(flag_key="f", environment="staging", config=CONFIG))
    stream.run(EnableFlag(flag_key="f", environment="production"))
    assert stream.state.env_versions == {"production": 4, "staging": 3}
    assert stream.state.updated_at == stream.events[-1].occurred_at > T0


def test_evolve__archived__sets_archived_flag() -> None:
    stream = created()
    stream.run(ArchiveFlag(flag_key="f"))
    assert stream.state.flag is not None and stream.state.flag.archived


def test_evolve__event_of_unknown_type__raises_unknown_event_type() -> None:
    stream = created()
    event = seal_next(EventDraft(type="FlagExploded"), "f", 2, stream.state.last_hash)
    with pytest.raises(UnknownEventType):
        evolve(stream.state, event)


def test_evolve__skipped_version__raises_event_out_of_order() -> None:
    stream = created()
    event = seal_next(
        to_draft(EnvironmentConfiguredPayload(config=CONFIG), environment="production"),
        "f",
        3,
        stream.state.last_hash,
    )
    with pytest.raises(EventOutOfOrder):
        evolve(stream.state, event)


def test_evolve__event_of_another_stream__raises_malformed_event() -> None:
    event = seal_next(to_draft(FlagCreatedPayload(flag=Flag(key="g"))), "g", 1, GENESIS_HASH)
    with pytest.raises(MalformedEvent):
        evolve(FlagState(key="f"), event)


def test_evolve__created_twice__raises_malformed_event() -> None:
    stream = created()
    event = seal_next(to_draft(FlagCreatedPayload(flag=Flag(key="f"))), "f", 2, stream.state.last_hash)
    with pytest.raises(MalformedEvent, match="already exists"):
        evolve(stream.state, event)


def test_evolve__change_to_absent_flag__raises_malformed_event() -> None:
    event = seal_next(
        to_draft(EnvironmentConfiguredPayload(config=CONFIG), environment="production"), "f", 1, GENESIS_HASH
    )
    with pytest.raises(MalformedEvent, match="does not exist"):
        evolve(FlagState(key="f"), event)


def test_evolve__environment_event_without_environment__raises_malformed_event() -> None:
    stream = created()
    event = seal_next(to_draft(EnvironmentConfiguredPayload(config=CONFIG)), "f", 2, stream.state.last_hash)
    with pytest.raises(MalformedEvent, match="no environment"):
        evolve(stream.state, event)


def test_evolve__metadata_change_that_does_not_fit__raises_malformed_event() -> None:
    stream = created()
    changes = {"variations": [{"key": "on", "value": "yes"}]}  # a string value for a boolean flag
    draft = EventDraft(type="FlagMetadataUpdated", payload={"changes": changes, "diff": []})
    with pytest.raises(MalformedEvent, match="cannot apply"):
        evolve(stream.state, seal_next(draft, "f", 2, stream.state.last_hash))


def test_evolve__metadata_event_changing_key_or_environments__raises_malformed_event() -> None:
    stream = created()
    draft = EventDraft(type="FlagMetadataUpdated", payload={"changes": {"key": "g", "environments": {}}})
    with pytest.raises(MalformedEvent, match="not metadata fields: environments, key"):
        evolve(stream.state, seal_next(draft, "f", 2, stream.state.last_hash))


def test_evolve__segment_event_in_flag_stream__raises_malformed_event() -> None:
    stream = created()
    event = seal_next(to_draft(SegmentArchivedPayload()), "f", 2, stream.state.last_hash)
    with pytest.raises(MalformedEvent, match="not an event of a flag stream"):
        evolve(stream.state, event)


def test_evolve_segment__flag_event_in_segment_stream__raises_malformed_event() -> None:
    event = seal_next(to_draft(FlagCreatedPayload(flag=Flag(key="f"))), "segment:s", 1, GENESIS_HASH)
    with pytest.raises(MalformedEvent, match="not an event of a segment stream"):
        evolve_segment(SegmentState(key="s"), event)


def test_evolve_segment__created_twice_or_changed_while_absent__raises_malformed_event() -> None:
    first = seal_next(to_draft(SegmentCreatedPayload(segment=Segment(key="s"))), "segment:s", 1, GENESIS_HASH)
    state = evolve_segment(SegmentState(key="s"), first)
    again = seal_next(
        to_draft(SegmentCreatedPayload(segment=Segment(key="s"))), "segment:s", 2, state.last_hash
    )
    with pytest.raises(MalformedEvent):
        evolve_segment(state, again)
    archived = seal_next(to_draft(SegmentArchivedPayload()), "segment:s", 1, GENESIS_HASH)
    with pytest.raises(MalformedEvent):
        evolve_segment(SegmentState(key="s"), archived)


def test_replay__no_events__needs_a_key() -> None:
    assert replay([], key="f") == FlagState(key="f")
    with pytest.raises(ValueError, match="flag key"):
        replay([])


def test_flag_state__json_round_trip__is_identical() -> None:
    stream = created(
        Flag.model_validate(
            {
                "key": "f",
                "environments": {
                    "production": {
                        "rules": [
                            {
                                "id": "r",
                                "when": {"not": {"attribute": "a", "op": "exists"}},
                                "serve": {"variation": "on"},
                            }
                        ]
                    }
                },
            }
        )
    )
    state = stream.state
    assert FlagState.model_validate_json(state.model_dump_json(by_alias=True)) == state
    assert state.exists and state.stream == "f"
    assert not FlagState(key="g").exists
    assert SegmentState(key="s").stream == "segment:s" and not SegmentState(key="s").exists


def test_config_at__past_version__is_the_config_then() -> None:
    flag = Flag.model_validate({"key": "f", "environments": {"staging": {}}})
    stream = created(flag)
    stream.run(SetEnvironmentConfig(flag_key="f", environment="production", config=CONFIG))  # v2
    stream.run(EnableFlag(flag_key="f", environment="production"))  # v3
    stream.run(SetEnvironmentConfig(flag_key="f", environment="staging", config=CONFIG))  # v4
    assert config_at(stream.events, 2, "production") == CONFIG
    assert config_at(stream.events, 1, "production") is None
    assert config_at(stream.events, 0, "production") is None
    assert config_at(stream.events, 4, "production") == CONFIG.model_copy(update={"enabled": True})
    assert environment_changes_after(stream.events, 1, "production") == (2, 3)
    assert environment_changes_after(stream.events, 0, "staging") == (1, 4)
    assert environment_changes_after(stream.events, 4, "production") == ()
