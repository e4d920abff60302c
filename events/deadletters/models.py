"""The dead-letter model: what a stage parks, what an operator sees, how they filter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal, get_args
from uuid import UUID

from core.envelope import Event
from core.errors import FlagstreamError
from events.resilience.classify import describe_error

__all__ = [
    "MAX_PAGE",
    "STAGES",
    "WAITING",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterNotFound",
    "DeadLetterPage",
    "DeadLetterResolved",
    "DeadLetterStats",
    "DeadLetterStatus",
    "KafkaCoordinates",
    "NewDeadLetter",
    "Stage",
]

Stage = Literal["relay", "projector", "rollback"]
DeadLetterStatus = Literal["parked", "redriven", "purged"]
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
MAX_PAGE: Final = 500
WAITING: Final = "WaitingBehindDeadLetter"
"""``error_class`` of a letter parked only because an earlier event of its flag is dead-lettered."""


class DeadLetterNotFound(FlagstreamError):
    code = "dead_letter_not_found"
    http_status = 404


class DeadLetterResolved(FlagstreamError):
    """The letter was already redriven or purged; it cannot be resolved twice."""

    code = "dead_letter_resolved"
    http_status = 409


@dataclass(frozen=True, slots=True)
class KafkaCoordinates:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """What a stage parks. Build it with :meth:`for_event` or :meth:`for_record`."""

    stage: Stage
    flag_key: str | None
    error_class: str
    error_message: str
    version: int | None = None
    event_id: UUID | None = None
    event_body: str | None = None
    raw_record: bytes | None = None
    kafka: KafkaCoordinates | None = None
    attempts: int = 1
    failed_at: datetime | None = None  # default: the database's now()

    @classmethod
    def for_event(
        cls,
        stage: Stage,
        event: Event,
        error: BaseException,
        *,
        attempts: int = 1,
        kafka: KafkaCoordinates | None = None,
        failed_at: datetime | None = None,
    ) -> NewDeadLetter:
        error_class, message = describe_error(error)
        return cls(
            stage=stage,
            flag_key=event.flag_key,
            version=event.version,
            event_id=event.event_id,
            event_body=event.to_json(),
            error_class=error_class,
            error_message=message,
            attempts=attempts,
            kafka=kafka,
            failed_at=failed_at,
        )

    @classmethod
    def waiting(cls, stage: Stage, event: Event, *, kafka: KafkaCoordinates | None = None) -> NewDeadLetter:
        """``event`` is fine but must wait behind an earlier dead letter of its flag (ordering rule)."""
        return cls(
            stage=stage,
            flag_key=event.flag_key,
            version=event.version,
            event_id=event.event_id,
            event_body=event.to_json(),
            error_class=WAITING,
            error_message=f"waits behind an earlier dead letter of {event.flag_key!r} at stage {stage}",
            kafka=kafka,
        )

    @classmethod
    def for_record(
        cls,
        stage: Stage,
        raw: bytes,
        error: BaseException,
        *,
        flag_key: str | None,
        kafka: KafkaCoordinates | None,
        attempts: int = 1,
        failed_at: datetime | None = None,
    ) -> NewDeadLetter:
        """A record that could not be read as an event (``flag_key``: the record's key, if any)."""
        error_class, message = describe_error(error)
        return cls(
            stage=stage,
            flag_key=flag_key,
            raw_record=raw,
            error_class=error_class,
            error_message=message,
            attempts=attempts,
            kafka=kafka,
            failed_at=failed_at,
        )

    def dedup_key(self) -> str:
        """Identity of the failed thing within its stage: parking it again is the same letter."""
        if self.event_id is not None:
            return f"event:{self.event_id}"
        if self.kafka is not None:
            return f"kafka:{self.kafka.topic}:{self.kafka.partition}:{self.kafka.offset}"
        if self.flag_key is not None and self.version is not None:
            return f"stream:{self.flag_key}:{self.version}"
        content = self.raw_record or (self.event_body or self.error_message).encode("utf-8")
        return "sha256:" + hashlib.sha256(content).hexdigest()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    stage: Stage
    flag_key: str | None
    version: int | None
    event_id: UUID | None
    event_body: str | None
    raw_record: bytes | None
    error_class: str
    error_message: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    kafka: KafkaCoordinates | None
    status: DeadLetterStatus
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_reason: str | None
    reprocessed_at: datetime | None  # a redriven letter the stage has processed again

    @property
    def is_waiting(self) -> bool:
        return self.error_class == WAITING

    @property
    def is_blocker(self) -> bool:
        """A parked letter that failed for its own sake: an operator must redrive or purge it."""
        return self.status == "parked" and not self.is_waiting


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Every field narrows; ``min_age``: failed first at least this long ago; ``status=None``: any."""

    stage: Stage | None = None
    error_class: str | None = None
    flag_key: str | None = None
    min_age: timedelta | None = None
    status: DeadLetterStatus | None = "parked"


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    next_after_id: int | None  # pass as ``after_id`` for the next page; None: last page


@dataclass(frozen=True, slots=True)
class DeadLetterStats:
    """Parked letters only: count by stage and error class, oldest age and blocked flags by stage."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_age_seconds: dict[str, float] = field(default_factory=dict)
    blocked_flags: dict[str, int] = field(default_factory=dict)
