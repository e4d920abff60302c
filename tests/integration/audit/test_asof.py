"""As-of reconstruction at three instants equals the states the commands produced."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest

from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from events.audit import StreamSettings, environment_as_of, evaluate_as_of, flag_as_of
from events.audit.asof import envelope_fields
from tests.integration.audit.support import T0, apply_commands, checkout_story, create_topic, produce

pytestmark = pytest.mark.integration

_INSTANTS = (T0 + timedelta(minutes=30), T0 + timedelta(minutes=90), T0 + timedelta(minutes=150))


async def _topic_with_story(bootstrap: str, topic: str) -> list:  # type: ignore[type-arg]
    events, states = apply_commands("new-checkout", checkout_story())
    noise, _ = apply_commands("other-flag", checkout_story("other-flag"), start=T0 + timedelta(minutes=5))
    await create_topic(bootstrap, topic)
    await produce(bootstrap, topic, [e for pair in zip(events, noise, strict=True) for e in pair])
    return states


async def test_flag_as_of__three_instants__equal_the_states_then(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    states = await _topic_with_story(kafka_bootstrap, unique_topic)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)

    found = [await flag_as_of(settings, "new-checkout", instant) for instant in _INSTANTS]

    assert found == states[:3]
    assert (await flag_as_of(settings, "new-checkout", T0 - timedelta(seconds=1))).version == 0


async def test_environment_as_of__three_instants__production_config_then(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    states = await _topic_with_story(kafka_bootstrap, unique_topic)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)

    for instant, expected in zip(_INSTANTS, states, strict=False):
        snapshot = await environment_as_of(settings, "production", instant)
        got = snapshot.flags["new-checkout"]
        assert expected.flag is not None and got.flag is not None
        assert got.version == expected.version
        assert got.flag.environments == {"production": expected.flag.environments["production"]}
        assert got.env_versions == {"production": expected.env_versions["production"]}
        assert set(snapshot.flags) == {"new-checkout", "other-flag"}


async def test_evaluate_as_of__beta_user__sees_what_the_rules_served_then(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await _topic_with_story(kafka_bootstrap, unique_topic)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)
    context = {"key": "user-1", "plan": "beta"}

    before = await evaluate_as_of(settings, "production", context, _INSTANTS[0], flags=["new-checkout"])
    after = await evaluate_as_of(settings, "production", context, _INSTANTS[1], flags=["new-checkout"])

    assert (before["new-checkout"].variation, before["new-checkout"].version) == ("off", 1)
    assert (after["new-checkout"].variation, after["new-checkout"].rule_id) == ("on", "beta")
    assert after["new-checkout"].version == 2


async def test_environment_as_of__two_worker_processes__same_snapshot(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await _topic_with_story(kafka_bootstrap, unique_topic)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)

    one = await environment_as_of(settings, "production", _INSTANTS[1])
    two = await environment_as_of(settings, "production", _INSTANTS[1], workers=2)

    assert two.flags == one.flags and two.events_read == one.events_read == 8


def _other_stream_event(stream: str, event_type: str) -> Event:
    draft = EventDraft(type=event_type, payload={"note": "not a flag"})
    return seal(draft, event_id=uuid.uuid4(), flag_key=stream, version=1, prev_hash=GENESIS_HASH,
                occurred_at=T0 + timedelta(minutes=1), actor="ops")


async def test_environment_as_of__incident_ops_and_alert_streams_in_topic__skipped(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    states = await _topic_with_story(kafka_bootstrap, unique_topic)
    others = [_other_stream_event("ops:dead-letters", "DeadLetterPurged"),
              _other_stream_event("incident:i-1", "IncidentRecorded"),
              _other_stream_event("alert:fp-1", "MetricAlertFired")]
    await produce(kafka_bootstrap, unique_topic, others)
    settings = StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300)

    snapshot = await environment_as_of(settings, "production", _INSTANTS[2])

    assert set(snapshot.flags) == {"new-checkout", "other-flag"}
    assert snapshot.flags["new-checkout"].version == states[2].version


def _tricky_event() -> Event:
    payload = {"note": ',"payload":{},"prev_hash":"x"', "prev_hash": "y"}
    draft = EventDraft(type="FlagArchived", payload=payload)
    return seal(draft, event_id=uuid.uuid4(), flag_key="tricky", version=1, prev_hash=GENESIS_HASH,
                occurred_at=T0, actor='a,"payload":{"prev_hash":1}', reason=',"prev_hash":"0"}')


@pytest.mark.parametrize("reorder", [False, True])
def test_envelope_fields__canonical_or_any_key_order__equal_the_parsed_envelope(reorder: bool) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    for event in [*events, _tricky_event()]:
        full = orjson.loads(event.to_json())
        raw = orjson.dumps(dict(reversed(full.items()))) if reorder else event.to_json().encode()

        fields = envelope_fields(raw)

        assert ("payload" in fields) == reorder  # canonical: head and tail only; otherwise the whole body
        assert {k: v for k, v in fields.items() if k != "payload"} == {
            k: v for k, v in full.items() if k != "payload"}
