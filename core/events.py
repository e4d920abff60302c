"""Event types, one payload model per type, and schema evolution (upcasting).

Every event type has a current ``schema_version``. An event written with an older version is
turned into the current shape by a chain of *upcasters*, registered per
``(type, from_schema_version)``; each returns the payload of ``from_schema_version + 1``.
:func:`read_payload` applies the chain and validates the result into the typed payload model.
It raises :class:`~core.errors.UnknownEventType` for a type it does not know,
:class:`~core.errors.UnsupportedSchemaVersion` for a version newer than it knows (or with no
upcaster), and :class:`~core.errors.MalformedEvent` when the payload does not fit.

Events that change an environment carry the **full resulting** ``config`` plus a field-level
``diff`` (paths relative to the environment configuration); the environment itself is the
envelope's ``environment``.

History of schema versions:
- ``RollbackSkipped`` v1: ``{"environment", "reason", "alert_fingerprint"}``;
  v2: ``{"environment", "why", "alert": {"fingerprint", "labels", "values"}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import ClassVar, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from core.diff import Change
from core.envelope import EventDraft
from core.errors import MalformedEvent, UnknownEventType, UnsupportedSchemaVersion
from core.model import EnvironmentConfig, Flag, Segment

__all__ = [
    "METADATA_FIELDS",
    "PAYLOAD_TYPES",
    "AlertInfo",
    "DeadLetterPurgedPayload",
    "DeadLetterRef",
    "DeadLettersRedrivenPayload",
    "EnvironmentChangedPayload",
    "EnvironmentConfiguredPayload",
    "EventType",
    "FlagArchivedPayload",
    "FlagCreatedPayload",
    "FlagDisabledPayload",
    "FlagEnabledPayload",
    "FlagMetadataUpdatedPayload",
    "FlagRestoredPayload",
    "FlagRolledBackPayload",
    "Payload",
    "ReadableEvent",
    "RollbackSkippedPayload",
    "RolloutChangedPayload",
    "RulesChangedPayload",
    "SegmentArchivedPayload",
    "SegmentCreatedPayload",
    "SegmentUpdatedPayload",
    "TargetsChangedPayload",
    "Upcaster",
    "current_schema_version",
    "read_payload",
    "register_payload",
    "register_upcaster",
    "to_draft",
]


class EventType(StrEnum):
    FLAG_CREATED = "FlagCreated"
    FLAG_METADATA_UPDATED = "FlagMetadataUpdated"
    ENVIRONMENT_CONFIGURED = "EnvironmentConfigured"
    FLAG_ENABLED = "FlagEnabled"
    FLAG_DISABLED = "FlagDisabled"
    ROLLOUT_CHANGED = "RolloutChanged"
    RULES_CHANGED = "RulesChanged"
    TARGETS_CHANGED = "TargetsChanged"
    FLAG_ROLLED_BACK = "FlagRolledBack"
    ROLLBACK_SKIPPED = "RollbackSkipped"
    FLAG_ARCHIVED = "FlagArchived"
    FLAG_RESTORED = "FlagRestored"
    SEGMENT_CREATED = "SegmentCreated"
    SEGMENT_UPDATED = "SegmentUpdated"
    SEGMENT_ARCHIVED = "SegmentArchived"
    DEAD_LETTER_PURGED = "DeadLetterPurged"
    DEAD_LETTERS_REDRIVEN = "DeadLettersRedriven"
    METRIC_ALERT_FIRED = "MetricAlertFired"
    METRIC_ALERT_RESOLVED = "MetricAlertResolved"
    INCIDENT_RECORDED = "IncidentRecorded"
    API_KEY_CREATED = "ApiKeyCreated"
    API_KEY_REVOKED = "ApiKeyRevoked"
    API_KEY_ROTATED = "ApiKeyRotated"


class Payload(BaseModel):
    """Base of every payload model: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[EventType]
    schema_version: ClassVar[int] = 1


class AlertInfo(BaseModel):
    """The metric alert behind an automatic rollback (or a skipped one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str = Field(min_length=1, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict)
    values: dict[str, JsonValue] = Field(default_factory=dict)


class FlagCreatedPayload(Payload):
    event_type = EventType.FLAG_CREATED
    flag: Flag


METADATA_FIELDS = frozenset({"name", "description", "tags", "owner", "temporary", "variations", "metadata"})
"""The flag fields a ``FlagMetadataUpdated`` event may change (never key, kind, environments, archived)."""


class FlagMetadataUpdatedPayload(Payload):
    """``changes``: the new value of each changed metadata field (JSON)."""

    event_type = EventType.FLAG_METADATA_UPDATED
    changes: dict[str, JsonValue]
    diff: tuple[Change, ...] = ()

    @field_validator("changes")
    @classmethod
    def _only_metadata(cls, changes: dict[str, JsonValue]) -> dict[str, JsonValue]:
        others = sorted(set(changes) - METADATA_FIELDS)
        if others:
            raise ValueError(f"not metadata fields: {', '.join(others)}")
        return changes


class EnvironmentChangedPayload(Payload):
    """Base of the events that change one environment: the full resulting config and the diff."""

    config: EnvironmentConfig
    diff: tuple[Change, ...] = ()


class EnvironmentConfiguredPayload(EnvironmentChangedPayload):
    event_type = EventType.ENVIRONMENT_CONFIGURED


class FlagEnabledPayload(EnvironmentChangedPayload):
    event_type = EventType.FLAG_ENABLED


class FlagDisabledPayload(EnvironmentChangedPayload):
    event_type = EventType.FLAG_DISABLED


class RolloutChangedPayload(EnvironmentChangedPayload):
    """``rule_id`` is ``None`` when the default serve (fallthrough) changed."""

    event_type = EventType.ROLLOUT_CHANGED
    rule_id: str | None = None


class RulesChangedPayload(EnvironmentChangedPayload):
    event_type = EventType.RULES_CHANGED


class TargetsChangedPayload(EnvironmentChangedPayload):
    event_type = EventType.TARGETS_CHANGED


class FlagRolledBackPayload(EnvironmentChangedPayload):
    """A compensating change: ``config`` is the configuration in force at ``to_version``."""

    event_type = EventType.FLAG_ROLLED_BACK
    to_version: int = Field(ge=0)
    undone_versions: tuple[int, ...] = ()
    alert: AlertInfo | None = None


class RollbackSkippedPayload(Payload):
    event_type = EventType.ROLLBACK_SKIPPED
    schema_version = 2
    environment: str
    why: str
    alert: AlertInfo | None = None


class FlagArchivedPayload(Payload):
    event_type = EventType.FLAG_ARCHIVED


class FlagRestoredPayload(Payload):
    event_type = EventType.FLAG_RESTORED


class SegmentCreatedPayload(Payload):
    event_type = EventType.SEGMENT_CREATED
    segment: Segment


class SegmentUpdatedPayload(Payload):
    event_type = EventType.SEGMENT_UPDATED
    segment: Segment
    diff: tuple[Change, ...] = ()


class SegmentArchivedPayload(Payload):
    event_type = EventType.SEGMENT_ARCHIVED


class DeadLetterRef(BaseModel):
    """A dead letter as an operator action names it (stream ``ops:dead-letters``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    letter_id: int = Field(ge=1)
    stage: str = Field(min_length=1, max_length=32)
    flag_key: str | None = None
    version: int | None = Field(default=None, ge=1)
    event_id: UUID | None = None
    error_class: str = Field(min_length=1, max_length=256)
    error_message: str = Field(max_length=4096)


class DeadLetterPurgedPayload(Payload):
    """An operator purged a dead letter: its stage skips the event for good (reason: the envelope's)."""

    event_type = EventType.DEAD_LETTER_PURGED
    letter: DeadLetterRef


class DeadLettersRedrivenPayload(Payload):
    """An operator redrove dead letters, by id or by ``filter`` (the filter as given)."""

    event_type = EventType.DEAD_LETTERS_REDRIVEN
    letters: tuple[DeadLetterRef, ...] = Field(min_length=1)
    filter: dict[str, JsonValue] | None = None


_PAYLOAD_MODELS: tuple[type[Payload], ...] = (
    FlagCreatedPayload,
    FlagMetadataUpdatedPayload,
    EnvironmentConfiguredPayload,
    FlagEnabledPayload,
    FlagDisabledPayload,
    RolloutChangedPayload,
    RulesChangedPayload,
    TargetsChangedPayload,
    FlagRolledBackPayload,
    RollbackSkippedPayload,
    FlagArchivedPayload,
    FlagRestoredPayload,
    SegmentCreatedPayload,
    SegmentUpdatedPayload,
    SegmentArchivedPayload,
    DeadLetterPurgedPayload,
    DeadLettersRedrivenPayload,
)

PAYLOAD_TYPES: dict[str, type[Payload]] = {model.event_type.value: model for model in _PAYLOAD_MODELS}
"""Event type name -> payload model (at its current schema version)."""


def register_payload(model: type[Payload]) -> type[Payload]:
    """Add a payload model defined in another core module (``core.alerts``) to :data:`PAYLOAD_TYPES`."""
    PAYLOAD_TYPES[model.event_type.value] = model
    return model


Upcaster = Callable[[dict[str, JsonValue]], dict[str, JsonValue]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning a ``from_version`` payload of ``event_type`` into the next version."""

    def register(function: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = function
        return function

    return register


def current_schema_version(event_type: str) -> int:
    return _model_for(event_type).schema_version


def to_draft(payload: Payload, *, environment: str | None = None) -> EventDraft:
    """Wrap a payload in an :class:`EventDraft` at its type's current schema version."""
    return EventDraft(
        type=payload.event_type.value,
        schema_version=payload.schema_version,
        environment=environment,
        payload=payload.model_dump(mode="json", by_alias=True),
    )


class ReadableEvent(Protocol):
    """Anything with a type, a schema version and a JSON payload (an ``Event`` or an ``EventDraft``)."""

    @property
    def type(self) -> str: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def payload(self) -> dict[str, JsonValue]: ...


def read_payload(event: ReadableEvent) -> Payload:
    """The event's payload, upcast to the current schema and validated into its model."""
    model = _model_for(event.type)
    version = event.schema_version
    if version > model.schema_version or version < 1:
        raise UnsupportedSchemaVersion(
            f"{event.type} schema version {version} is not supported "
            f"(this reader knows 1..{model.schema_version})"
        )
    data = dict(event.payload)
    while version < model.schema_version:
        upcaster = _UPCASTERS.get((event.type, version))
        if upcaster is None:
            raise UnsupportedSchemaVersion(f"no upcaster for {event.type} from schema version {version}")
        data = upcaster(data)
        version += 1
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise MalformedEvent(f"{event.type} payload does not fit schema version {version}: {e}") from e


def _model_for(event_type: str) -> type[Payload]:
    model = PAYLOAD_TYPES.get(event_type)
    if model is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    return model


@register_upcaster(EventType.ROLLBACK_SKIPPED.value, 1)
def _rollback_skipped_v1_to_v2(data: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """v1 had ``reason`` and a bare ``alert_fingerprint``; v2 has ``why`` and an ``alert`` object."""
    fingerprint = data.get("alert_fingerprint")
    return {
        "environment": data.get("environment"),
        "why": data.get("reason", ""),
        "alert": {"fingerprint": fingerprint, "labels": {}, "values": {}} if fingerprint else None,
    }


# Alert and incident payloads live in core.alerts, which registers them; importing it here makes
# every reader of events know them (core.alerts imports only names defined above).
import core.alerts  # noqa: E402, F401
from core import apikeys as _apikeys  # noqa: E402, F401  (API-key audit events, registered the same way)
