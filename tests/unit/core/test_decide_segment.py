"""decide_segment() / evolve_segment(): segment streams keyed ``segment:<key>``."""

from __future__ import annotations

import pytest

from core.commands import ArchiveSegment, CreateSegment, UpdateSegment
from core.decide import decide_segment
from core.errors import (
    InvalidCommand,
    InvalidConfiguration,
    SegmentArchived,
    SegmentExists,
    SegmentInUse,
    SegmentNotFound,
    VersionConflict,
)
from core.events import EventType, read_payload
from core.evolve import replay_segment
from core.model import Segment
from core.state import Catalog, SegmentState
from tests.unit.core._streams import SegmentStream

BETA = Segment.model_validate({"key": "beta", "when": {"attribute": "plan", "op": "eq", "values": ["pro"]}})


def created() -> SegmentStream:
    stream = SegmentStream("beta")
    stream.run(CreateSegment(segment_key="beta", segment=BETA, expected_version=0))
    return stream


def test_create_segment__new_key__emits_segment_created_in_segment_stream() -> None:
    stream = created()
    assert stream.events[0].type == EventType.SEGMENT_CREATED
    assert stream.events[0].flag_key == "segment:beta"
    assert stream.state.segment == BETA and stream.state.version == 1


def test_create_segment__existing__raises_segment_exists() -> None:
    with pytest.raises(SegmentExists) as caught:
        created().run(CreateSegment(segment_key="beta", segment=BETA))
    assert (caught.value.code, caught.value.http_status) == ("segment_exists", 409)


def test_create_segment__stale_version__raises_version_conflict() -> None:
    with pytest.raises(VersionConflict):
        SegmentStream("beta").run(CreateSegment(segment_key="beta", segment=BETA, expected_version=1))


def test_create_segment__archived__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        SegmentStream("beta").run(
            CreateSegment(segment_key="beta", segment=BETA.model_copy(update={"archived": True}))
        )


def test_create_segment__contains_itself__raises_invalid_configuration() -> None:
    segment = Segment.model_validate(
        {"key": "beta", "when": {"attribute": "x", "op": "in_segment", "values": ["beta"]}}
    )
    with pytest.raises(InvalidConfiguration) as caught:
        SegmentStream("beta").run(CreateSegment(segment_key="beta", segment=segment))
    assert caught.value.details == [{"path": "when.values[0]", "message": "a segment cannot contain itself"}]


def test_decide_segment__state_of_another_segment__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        decide_segment(SegmentState(key="alpha"), ArchiveSegment(segment_key="beta"), Catalog())


def test_update_segment__absent__raises_segment_not_found() -> None:
    with pytest.raises(SegmentNotFound) as caught:
        SegmentStream("beta").run(UpdateSegment(segment_key="beta", segment=BETA))
    assert (caught.value.code, caught.value.http_status) == ("segment_not_found", 404)


def test_update_segment__new_condition__emits_segment_updated_with_diff() -> None:
    stream = created()
    new = Segment.model_validate(
        {"key": "beta", "when": {"attribute": "plan", "op": "eq", "values": ["team"]}}
    )
    [event] = stream.run(UpdateSegment(segment_key="beta", segment=new, expected_version=1))
    payload = read_payload(event)
    assert event.type == EventType.SEGMENT_UPDATED
    assert [c.model_dump() for c in payload.diff] == [  # type: ignore[attr-defined]
        {"path": "when.values[0]", "before": "pro", "after": "team"}
    ]
    assert stream.state.segment == new


def test_update_segment__same_definition__is_a_no_op() -> None:
    stream = created()
    assert stream.run(UpdateSegment(segment_key="beta", segment=BETA)) == []


def test_update_segment__other_key__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        created().run(UpdateSegment(segment_key="beta", segment=BETA.model_copy(update={"key": "gamma"})))


def test_update_segment__archived_flag_set__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        created().run(UpdateSegment(segment_key="beta", segment=BETA.model_copy(update={"archived": True})))


def test_update_segment__overlapping_included_and_excluded__raises_invalid_configuration() -> None:
    segment = BETA.model_copy(update={"included": ("u1", "u2"), "excluded": ("u2",)})
    with pytest.raises(InvalidConfiguration) as caught:
        created().run(UpdateSegment(segment_key="beta", segment=segment))
    assert caught.value.details[0]["path"] == "excluded[0]"


def test_archive_segment__unused__emits_segment_archived() -> None:
    stream = created()
    [event] = stream.run(ArchiveSegment(segment_key="beta"))
    assert event.type == EventType.SEGMENT_ARCHIVED
    assert stream.state.segment is not None and stream.state.segment.archived


def test_archive_segment__used_by_flags__raises_segment_in_use_naming_them() -> None:
    stream = created()
    stream.catalog = Catalog(segment_users={"beta": frozenset({"b-flag", "a-flag"})})
    with pytest.raises(SegmentInUse) as caught:
        stream.run(ArchiveSegment(segment_key="beta"))
    assert [d["message"] for d in caught.value.details] == ["used by flag 'a-flag'", "used by flag 'b-flag'"]
    assert caught.value.http_status == 409


def test_segment_command__archived_segment__raises_segment_archived() -> None:
    stream = created()
    stream.run(ArchiveSegment(segment_key="beta"))
    with pytest.raises(SegmentArchived) as caught:
        stream.run(UpdateSegment(segment_key="beta", segment=BETA))
    assert caught.value.code == "segment_archived"


def test_decide_segment__unsupported_command__raises_invalid_command() -> None:
    from core.commands import SegmentCommand

    class Unknown(SegmentCommand):
        pass

    with pytest.raises(InvalidCommand):
        created().run(Unknown(segment_key="beta"))


def test_replay_segment__all_events__equals_incremental_state() -> None:
    stream = created()
    stream.run(UpdateSegment(segment_key="beta", segment=BETA.model_copy(update={"included": ("u1",)})))
    stream.run(ArchiveSegment(segment_key="beta"))
    assert replay_segment(stream.events) == stream.state
    assert replay_segment([], key="beta") == SegmentState(key="beta")
    with pytest.raises(ValueError, match="segment key"):
        replay_segment([])


def test_archive_segment__used_by_another_segment__raises_segment_in_use() -> None:
    stream = created()
    stream.catalog = Catalog(segment_dependencies={"beta": frozenset(), "gamma": frozenset({"beta"})})
    with pytest.raises(SegmentInUse) as caught:
        stream.run(ArchiveSegment(segment_key="beta"))
    assert [d["message"] for d in caught.value.details] == ["used by segment 'gamma'"]
