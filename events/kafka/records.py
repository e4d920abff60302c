"""What a record looks like on Kafka and where it goes: topic routing by stream prefix, headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from core.envelope import Event, format_instant

__all__ = [
    "ALERT_STREAM_PREFIX",
    "FLAG_EVENTS_TOPIC",
    "LOG_EPOCH_HEADER",
    "METRIC_ALERTS_TOPIC",
    "headers_for",
    "log_epoch_of",
    "topic_for",
]

FLAG_EVENTS_TOPIC: Final = "flagstream.flag-events"
METRIC_ALERTS_TOPIC: Final = "flagstream.metric-alerts"
ALERT_STREAM_PREFIX: Final = "alert:"
LOG_EPOCH_HEADER: Final = "fs_log_epoch"


def topic_for(stream_key: str, *, flag_events_topic: str, metric_alerts_topic: str) -> str:
    """The topic a stream's events go to (docs/architecture.md): ``alert:`` streams to the
    metric-alerts topic, every other stream (flags, ``segment:``, ``incident:``, ``ops:``) to
    flag-events."""
    if stream_key.startswith(ALERT_STREAM_PREFIX):
        return metric_alerts_topic
    return flag_events_topic


def headers_for(event: Event, *, log_epoch: int = 0) -> list[tuple[str, bytes]]:
    """CloudEvents-style (binary mode, Kafka protocol binding) headers, plus our own ``fs_*``.

    ``fs_log_epoch``: how many times the relay found the broker had lost its log and republished
    it (:mod:`events.relay.log_guard`); projectors reset their checkpoints when it grows."""
    values = {
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_type": event.type,
        "ce_source": "flagstream",
        "ce_time": format_instant(event.occurred_at),
        "ce_subject": event.flag_key,
        "fs_version": str(event.version),
        "fs_schema_version": str(event.schema_version),
        LOG_EPOCH_HEADER: str(log_epoch),
    }
    return [(k, v.encode("utf-8")) for k, v in values.items()]


def log_epoch_of(headers: Iterable[tuple[str, bytes]]) -> int:
    """The ``fs_log_epoch`` header of a record (0 when absent or unreadable: records from before it)."""
    for key, value in headers:
        if key == LOG_EPOCH_HEADER:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
