"""Planning what an event changes in the read model (pure: no Redis)."""

from __future__ import annotations

from core.evolve import evolve, evolve_segment
from core.model import Segment
from core.state import FlagState, SegmentState
from projections.documents import decode_env_doc, decode_segment_doc, plan_flag_apply, plan_segment_apply
from projections.keys import Keyspace
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

KEYS = Keyspace()


def _created(writer: StreamWriter) -> FlagState:
    return evolve(FlagState(key="a"), writer.create(flag_doc("a", "production", "staging")))


def test_plan__flag_created__writes_one_slice_per_environment() -> None:
    writer = StreamWriter()
    event = writer.create(flag_doc("a", "production", "staging"))

    plan = plan_flag_apply(KEYS, FlagState(key="a"), evolve(FlagState(key="a"), event), event)

    assert [w.environment for w in plan.writes] == ["production", "staging"]
    version, flag = decode_env_doc(plan.writes[0].doc or "")
    assert (version, list(flag.environments)) == (1, ["production"])
    assert plan.writes[0].hash_key == "fs:env:production:flags"


def test_plan__environment_changed__touches_only_that_environment() -> None:
    writer = StreamWriter()
    before = _created(writer)
    event = writer.configure("a", "staging", on_config(True))

    plan = plan_flag_apply(KEYS, before, evolve(before, event), event)

    assert [w.environment for w in plan.writes] == ["staging"]
    assert decode_env_doc(plan.writes[0].doc or "")[0] == 2


def test_plan__metadata_changed__touches_every_environment() -> None:
    writer = StreamWriter()
    before = _created(writer)
    event = writer.metadata("a", name="Renamed")

    plan = plan_flag_apply(KEYS, before, evolve(before, event), event)

    assert [w.environment for w in plan.writes] == ["production", "staging"]
    assert all(decode_env_doc(w.doc or "")[1].name == "Renamed" for w in plan.writes)


def test_plan__archived__keeps_documents_marked_archived() -> None:
    writer = StreamWriter()
    before = _created(writer)
    event = writer.archive("a")

    plan = plan_flag_apply(KEYS, before, evolve(before, event), event)

    assert [decode_env_doc(w.doc or "")[1].archived for w in plan.writes] == [True, True]


def test_plan__state_json__round_trips_to_the_evolved_state() -> None:
    writer = StreamWriter()
    before = _created(writer)
    event = writer.configure("a", "production", on_config(True))
    after = evolve(before, event)

    plan = plan_flag_apply(KEYS, before, after, event)

    assert FlagState.model_validate_json(plan.state_json) == after
    assert (plan.stream_key, plan.version) == ("a", 2)


def test_plan__segment__writes_segments_hash_with_version() -> None:
    writer = StreamWriter()
    event = writer.create_segment(Segment(key="beta", included=("u1",)))
    after = evolve_segment(SegmentState(key="beta"), event)

    plan = plan_segment_apply(KEYS, after, event)

    (write,) = plan.writes
    assert (write.hash_key, write.field, write.environment) == ("fs:segments", "beta", None)
    assert decode_segment_doc(write.doc or "") == (1, after.segment)
    assert plan.stream_key == "segment:beta"
