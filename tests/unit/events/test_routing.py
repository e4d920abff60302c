"""Routing by stream prefix (docs/architecture.md): only ``alert:`` streams leave flag-events."""

from __future__ import annotations

import pytest

from events.kafka.adapter import topic_for

TOPICS = {"flag_events_topic": "fe", "metric_alerts_topic": "ma"}


@pytest.mark.parametrize("stream", ["alert:fp-1", "alert:"])
def test_topic_for__alert_stream__metric_alerts_topic(stream: str) -> None:
    assert topic_for(stream, **TOPICS) == "ma"


@pytest.mark.parametrize(
    "stream", ["checkout", "segment:beta", "incident:42", "ops:dead-letters", "alerts-banner", "Alert:x"]
)
def test_topic_for__any_other_stream__flag_events_topic(stream: str) -> None:
    assert topic_for(stream, **TOPICS) == "fe"
