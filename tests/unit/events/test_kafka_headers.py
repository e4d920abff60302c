from __future__ import annotations

from events.kafka.adapter import flag_events_spec, headers_for, metric_alerts_spec
from events.kafka.records import log_epoch_of
from tests.unit.events.factories import make_event


def test_headers__cloudevents_fields__describe_the_event() -> None:
    event = make_event("checkout", 7)
    headers = dict(headers_for(event))
    assert headers == {
        "ce_specversion": b"1.0",
        "ce_id": str(event.event_id).encode(),
        "ce_type": b"FlagToggled",
        "ce_source": b"flagstream",
        "ce_time": b"2026-01-01T00:00:00.000000Z",
        "ce_subject": b"checkout",
        "fs_version": b"7",
        "fs_schema_version": b"1",
        "fs_log_epoch": b"0",
    }


def test_headers__log_epoch__stamped_and_read_back() -> None:
    headers = headers_for(make_event("checkout", 7), log_epoch=3)
    assert log_epoch_of(headers) == 3
    assert log_epoch_of([("fs_version", b"7")]) == 0  # a record from before the epoch header
    assert log_epoch_of([("fs_log_epoch", b"x")]) == 0


def test_topic_specs__audit_topics__keep_everything_forever() -> None:
    for spec in (flag_events_spec(), metric_alerts_spec()):
        assert spec.config == {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    assert flag_events_spec().name == "flagstream.flag-events"
    assert metric_alerts_spec().name == "flagstream.metric-alerts"
