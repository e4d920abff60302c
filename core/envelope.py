"""The one envelope every event travels in, and the hash chain that makes the log tamper-evident.

``hash`` = SHA-256 (hex) over the canonical serialisation of every envelope field except
``hash`` itself — ``prev_hash`` included — so each event of a flag commits to the whole history
before it. Canonical form: JSON, keys sorted, no insignificant whitespace, UTF-8, datetimes as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds), UUIDs lower-case with hyphens.
The first event of a stream (version 1) has ``prev_hash`` = :data:`GENESIS_HASH`.

Streams are keyed by ``flag_key``. Segments live in streams named ``segment:<key>``
(``:`` is not allowed in flag keys, so the two never collide).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_serializer, field_validator

__all__ = [
    "GENESIS_HASH",
    "SEGMENT_STREAM_PREFIX",
    "ChainBreak",
    "Event",
    "EventDraft",
    "canonical_json",
    "compute_hash",
    "format_instant",
    "seal",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
SEGMENT_STREAM_PREFIX = "segment:"


def format_instant(value: datetime) -> str:
    """The canonical text of an instant: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventDraft(BaseModel):
    """What ``decide`` produces before the envelope is sealed with a version and hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    schema_version: int = 1
    environment: str | None = None
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class Event(BaseModel):
    """An immutable, hash-chained event of one stream (one flag, or one segment)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str = Field(min_length=1, max_length=128)
    schema_version: int = Field(default=1, ge=1)
    flag_key: str = Field(min_length=1, max_length=200)
    environment: str | None = None
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    actor: str = Field(min_length=1, max_length=256)
    reason: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    prev_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_serializer("occurred_at")
    def _serialise_instant(self, value: datetime) -> str:
        return format_instant(value)

    def to_json(self) -> str:
        """The canonical JSON of the whole envelope (what Kafka carries and Postgres stores)."""
        return canonical_json(self._fields())

    def _fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def is_intact(self) -> bool:
        return self.hash == compute_hash(self._fields())

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        return cls.model_validate_json(raw)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an envelope's fields, ``hash`` excluded."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def seal(
    draft: EventDraft,
    *,
    event_id: UUID,
    flag_key: str,
    version: int,
    prev_hash: str,
    occurred_at: datetime,
    actor: str,
    reason: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    """Turn a draft into a sealed event: envelope filled in and ``hash`` computed."""
    fields: dict[str, Any] = {
        "event_id": str(event_id),
        "type": draft.type,
        "schema_version": draft.schema_version,
        "flag_key": flag_key,
        "environment": draft.environment,
        "version": version,
        "occurred_at": format_instant(occurred_at),
        "actor": actor,
        "reason": reason,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "payload": draft.payload,
        "prev_hash": prev_hash,
    }
    # Round-trip the payload through JSON so the hash is over exactly what a reader will see.
    fields = json.loads(canonical_json(fields))
    fields["hash"] = compute_hash(fields)
    return Event.model_validate(fields)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first broken link of a stream: where, and why."""

    flag_key: str
    version: int
    event_id: UUID | None
    problem: str  # "tampered" | "broken_link" | "gap" | "duplicate" | "wrong_stream"
    detail: str


def verify_chain(events: Iterable[Event], *, flag_key: str | None = None) -> ChainBreak | None:
    """Check one stream's events (in version order): gapless from 1, each hash intact and linked.

    Returns the first broken link, or ``None`` when the chain is whole.
    """
    expected_version = 1
    expected_prev = GENESIS_HASH
    key = flag_key
    for event in events:
        key = key or event.flag_key  # the stream is the one named, or the first event's
        if event.flag_key != key:
            return ChainBreak(key, event.version, event.event_id, "wrong_stream",
                              f"event of stream {event.flag_key!r} in stream {key!r}")
        if event.version < expected_version:
            return ChainBreak(key, event.version, event.event_id, "duplicate",
                              f"version {event.version} seen again after {expected_version - 1}")
        if event.version > expected_version:
            return ChainBreak(key, expected_version, None, "gap",
                              f"version {expected_version} missing (next present is {event.version})")
        if not event.is_intact():
            return ChainBreak(key, event.version, event.event_id, "tampered",
                              "hash does not match the event's content")
        if event.prev_hash != expected_prev:
            return ChainBreak(key, event.version, event.event_id, "broken_link",
                              "prev_hash does not match the previous event's hash")
        expected_version += 1
        expected_prev = event.hash
    return None
