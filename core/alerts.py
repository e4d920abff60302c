"""Metric alerts and incidents: their event payloads, and the pure rollback decision.

An alert is an event of stream ``alert:<fingerprint>`` (``MetricAlertFired`` /
``MetricAlertResolved``); an automatic rollback is recorded as ``IncidentRecorded`` in stream
``incident:<id>``. :func:`implicated_flags` / :func:`decide_flag` decide, from a firing alert
and the flags' event streams, which flags to roll back to which version — or why not. They do
no I/O and never read the clock: callers pass ``now``.

Rules (see docs/rollback.md):
- the alert needs an ``environment`` label; a ``flag`` label names the flag explicitly (and an
  optional ``flag_version`` label the change to undo); without ``flag``, every flag whose
  events are passed is a candidate;
- the flag must exist, not be archived, and have ``auto_rollback.enabled`` in that environment;
- the change to undo is the named one, else the first change of that environment inside the
  look-back window ``[starts_at - lookback, starts_at]`` (rollbacks are never "undone");
- a stream already holding an event caused by this alert event was handled: nothing to do;
- an automatic rollback of that environment within ``auto_rollback.cooldown_seconds``: cool-down;
- a change of that environment after the alert started: a person acted, skip (and say so);
- restoring what is already in force changes nothing: not implicated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from core import evolve as _evolve  # module import: core.events imports this module while loading
from core.envelope import Event
from core.events import (
    AlertInfo,
    EventType,
    FlagRolledBackPayload,
    Payload,
    read_payload,
    register_payload,
)
from core.model import ENVIRONMENT_PATTERN, AutoRollback, EnvironmentConfig

__all__ = [
    "ALERT_STREAM_PREFIX",
    "DEFAULT_CONFIRMATION_SECONDS",
    "FINGERPRINT_PATTERN",
    "INCIDENT_STREAM_PREFIX",
    "Decision",
    "Implicated",
    "IncidentFlag",
    "IncidentRecordedPayload",
    "MetricAlertFiredPayload",
    "MetricAlertPayload",
    "MetricAlertResolvedPayload",
    "NotImplicated",
    "NotImplicatedOutcome",
    "alert_environment",
    "alert_info",
    "alert_stream",
    "decide_flag",
    "fingerprint_of",
    "implicated_flags",
    "incident_stream",
]

ALERT_STREAM_PREFIX = "alert:"
INCIDENT_STREAM_PREFIX = "incident:"
FINGERPRINT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
DEFAULT_CONFIRMATION_SECONDS = AutoRollback().confirmation_delay_seconds
_ENVIRONMENT = re.compile(ENVIRONMENT_PATTERN)


class MetricAlertPayload(Payload):
    """One alert of a source (Alertmanager or any other): what it says and when it started/ended."""

    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)
    source: str = Field(min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    values: dict[str, JsonValue] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    generator_url: str | None = Field(default=None, max_length=2048)


class MetricAlertFiredPayload(MetricAlertPayload):
    event_type = EventType.METRIC_ALERT_FIRED


class MetricAlertResolvedPayload(MetricAlertPayload):
    event_type = EventType.METRIC_ALERT_RESOLVED


class IncidentFlag(BaseModel):
    """What the rollback worker did to one flag environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flag_key: str
    environment: str
    outcome: Literal["rolled_back", "dry_run"]
    decided_version: int = Field(ge=0, description="The flag version the decision was made against.")
    to_version: int = Field(ge=0)
    undone_versions: tuple[int, ...] = ()
    event_id: str | None = None
    version: int | None = Field(default=None, description="The flag version of the compensating event.")


class IncidentRecordedPayload(Payload):
    event_type = EventType.INCIDENT_RECORDED

    incident_id: str
    alert: AlertInfo
    alert_event_id: str
    source: str
    dry_run: bool = False
    flags: tuple[IncidentFlag, ...]
    alert_started_at: AwareDatetime
    alert_accepted_at: AwareDatetime
    rolled_back_at: AwareDatetime
    seconds_to_rollback: float = Field(ge=0, description="From alert accepted to the compensating event.")


for _model in (MetricAlertFiredPayload, MetricAlertResolvedPayload, IncidentRecordedPayload):
    register_payload(_model)


def alert_stream(fingerprint: str) -> str:
    return ALERT_STREAM_PREFIX + fingerprint


def incident_stream(incident_id: str) -> str:
    return INCIDENT_STREAM_PREFIX + incident_id


def alert_environment(alert: MetricAlertPayload) -> str | None:
    """The alert's ``environment`` label when it is a valid environment name."""
    environment = alert.labels.get("environment")
    return environment if environment and _ENVIRONMENT.match(environment) else None


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable fingerprint for an alert that has none: SHA-256 of its sorted labels (16 hex digits)."""
    text = "\n".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def alert_info(alert: MetricAlertPayload) -> AlertInfo:
    return AlertInfo(fingerprint=alert.fingerprint, labels=dict(alert.labels), values=dict(alert.values))


# --- the decision --------------------------------------------------------------------------------

NotImplicatedOutcome = Literal[
    "not_implicated", "opted_out", "already_handled", "cooldown", "changed_after_alert"
]


@dataclass(frozen=True, slots=True)
class Implicated:
    """Roll ``environment`` of ``flag_key`` back to its configuration right after ``to_version``."""

    flag_key: str
    environment: str
    decided_version: int
    to_version: int
    undone_versions: tuple[int, ...]
    restored_config: EnvironmentConfig | None
    auto_rollback: AutoRollback
    explicit: bool


@dataclass(frozen=True, slots=True)
class NotImplicated:
    flag_key: str | None
    environment: str | None
    outcome: NotImplicatedOutcome
    why: str
    decided_version: int = 0


Decision = Implicated | NotImplicated
_NOT_CANDIDATES = frozenset({"not_implicated", "opted_out"})


def implicated_flags(
    alert: MetricAlertPayload,
    alert_event_id: str,
    histories: Mapping[str, Sequence[Event]],
    *,
    now: datetime,
    lookback: timedelta,
) -> list[Decision]:
    """Decisions about the implicated flags (``histories``: flag key -> its events from version 1).

    With a ``flag`` label only that flag is considered, and there is always one decision. Without,
    every flag of ``histories`` is a candidate, and only those that concern the worker are kept:
    implicated ones, and opted-in flags changed inside the window that are cooling down, were
    changed after the alert, or were already handled. An empty result means no flag is implicated.
    """
    environment = alert_environment(alert)
    if environment is None:
        return [
            NotImplicated(
                alert.labels.get("flag"), None, "not_implicated", "the alert has no valid environment label"
            )
        ]
    named = alert.labels.get("flag")
    if named is not None:
        events = histories.get(named, ())
        if not events:
            return [NotImplicated(named, environment, "not_implicated", f"flag {named!r} does not exist")]
        return [
            decide_flag(
                alert,
                alert_event_id,
                events,
                environment=environment,
                explicit=True,
                now=now,
                lookback=lookback,
            )
        ]
    decisions = (
        decide_flag(
            alert,
            alert_event_id,
            histories[key],
            environment=environment,
            explicit=False,
            now=now,
            lookback=lookback,
        )
        for key in sorted(histories)
        if histories[key]
    )
    return [d for d in decisions if not isinstance(d, NotImplicated) or d.outcome not in _NOT_CANDIDATES]


def decide_flag(
    alert: MetricAlertPayload,
    alert_event_id: str,
    events: Sequence[Event],
    *,
    environment: str,
    explicit: bool,
    now: datetime,
    lookback: timedelta,
) -> Decision:
    """Whether (and to what) to roll back one flag environment for a firing alert."""
    key = events[0].flag_key
    state = _evolve.replay(events)
    version = state.version

    def no(outcome: NotImplicatedOutcome, why: str) -> NotImplicated:
        return NotImplicated(key, environment, outcome, why, version)

    if any(e.causation_id == alert_event_id for e in events):
        return no("already_handled", "an event caused by this alert is already recorded")
    if state.flag is None or state.flag.archived:
        return no("not_implicated", "the flag is archived")
    current = state.flag.environments.get(environment)
    if current is None:
        return no("not_implicated", f"the flag has no environment {environment!r}")
    settings = current.auto_rollback
    if not settings.enabled:
        return no("opted_out", f"auto_rollback is not enabled in {environment!r}")
    by_version = {e.version: e for e in events}
    changes = [by_version[v] for v in _evolve.environment_changes_after(events, 0, environment)]
    change = _implicated_change(alert, changes, lookback)
    if isinstance(change, str):
        return no("not_implicated", change)
    cooling = _last_automatic_rollback(changes, after=now - timedelta(seconds=settings.cooldown_seconds))
    if cooling is not None:
        return no(
            "cooldown",
            f"rolled back automatically at version {cooling.version}, "
            f"within the cool-down of {settings.cooldown_seconds:g} s",
        )
    later = [e for e in changes if e.version > change.version and e.occurred_at > alert.starts_at]
    if later:
        return no(
            "changed_after_alert",
            f"{environment!r} was changed by {later[-1].actor} at version "
            f"{later[-1].version}, after the alert started",
        )
    to_version = change.version - 1
    restored = _evolve.config_at(events, to_version, environment)
    effective = restored or current.model_copy(update={"enabled": False})
    if effective == current:
        return no("not_implicated", f"{environment!r} already has the configuration of version {to_version}")
    return Implicated(
        flag_key=key,
        environment=environment,
        decided_version=version,
        to_version=to_version,
        undone_versions=_evolve.environment_changes_after(events, to_version, environment),
        restored_config=restored,
        auto_rollback=settings,
        explicit=explicit,
    )


def _implicated_change(
    alert: MetricAlertPayload, changes: Sequence[Event], lookback: timedelta
) -> Event | str:
    """The change to undo, or why there is none."""
    candidates = [e for e in changes if e.type != EventType.FLAG_ROLLED_BACK.value]
    named = alert.labels.get("flag_version")
    if named is not None and alert.labels.get("flag") is not None:
        match = [e for e in candidates if str(e.version) == named.strip()]
        return match[0] if match else f"version {named} did not change this environment"
    since = alert.starts_at - lookback
    inside = [e for e in candidates if since <= e.occurred_at <= alert.starts_at]
    if not inside:
        return f"no change within the look-back window of {lookback.total_seconds():g} s before the alert"
    return inside[0]


def _last_automatic_rollback(changes: Sequence[Event], *, after: datetime) -> Event | None:
    for event in reversed(changes):
        if event.type == EventType.FLAG_ROLLED_BACK.value and event.occurred_at > after:
            payload = read_payload(event)
            if isinstance(payload, FlagRolledBackPayload) and payload.alert is not None:
                return event
    return None
