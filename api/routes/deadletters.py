"""The dead-letter queue for operators (role ``ops`` or ``admin``): list, inspect, redrive, purge.

Purges and redrives are recorded as events of ``ops:dead-letters`` with the principal as actor
(:mod:`events.deadletters.operations`). Redrive marks letters ``redriven`` and calls the stage's registered
redriver (``Container.redrivers``) when there is one; otherwise the stage worker releases them.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from api.deps import Operator, Services
from api.errors import ApiError, parse_instant
from events.deadletters import MAX_PAGE, STAGES, DeadLetter, DeadLetterFilter, DeadLetterStore, Stage
from events.deadletters.operations import (
    DeadLetterOperations,
    OperationsJournal,
    PostgresStreamHead,
    RedriveResult,
    RedriverRegistry,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead-letters"])

StatusFilter = Literal["parked", "redriven", "purged", "any"]
MAX_AGE_SECONDS = 100 * 365 * 86_400  # an age filter beyond a century overflows timedelta arithmetic
LetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Dead letter id")]


class KafkaOut(BaseModel):
    topic: str
    partition: int
    offset: int


class DeadLetterOut(BaseModel):
    id: int
    stage: str
    flag: str | None
    version: int | None
    event_id: str | None
    error_class: str
    error_message: str
    waiting: bool = Field(description="Parked only because an earlier event of its flag is dead-lettered.")
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    kafka: KafkaOut | None
    status: str
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_reason: str | None
    reprocessed_at: datetime | None
    event: str | None = Field(default=None, description="The event's JSON, verbatim (detail view only).")
    raw_record_base64: str | None = Field(default=None, description="Unreadable record bytes (detail view).")


class DeadLetterListOut(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = None


class PurgeBody(BaseModel):
    # strict like every public request model: "1" is not a number, 1 is not a string
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=1024, description="Why the event is dropped for good.")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a purge needs a non-blank reason")
        return value.strip()


class RedriveBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # RedriveFilterBody inherits it

    reason: str | None = Field(default=None, max_length=1024)


class RedriveFilterBody(RedriveBody):
    stage: Stage | None = None
    error_class: str | None = Field(default=None, min_length=1, max_length=256)
    flag: str | None = Field(default=None, min_length=1, max_length=200)
    min_age_seconds: int | None = Field(default=None, ge=0, le=MAX_AGE_SECONDS)
    older_than: str | None = Field(default=None, description="ISO-8601 instant: failed first before it.")
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class PurgeOut(BaseModel):
    letter: DeadLetterOut
    event_id: str
    event_version: int


class RedriveOut(BaseModel):
    redriven: int
    ids: list[int]
    by_stage: dict[str, int]
    reprocessed: dict[str, int] = Field(description="Reprocessed at once by the stage's redriver.")
    failures: dict[str, str] = Field(description="Stages whose redriver failed; their worker releases them.")
    more: bool = Field(description="Parked letters matching the filter remain beyond the limit.")
    event_id: str | None


class BlockedFlagsOut(BaseModel):
    stages: dict[str, list[str]]
    total: int


def _operations(request: Request, services: Services) -> DeadLetterOperations:
    """Per request, around the process's one journal (kept on ``app.state``: it serialises appends)."""
    journal = getattr(request.app.state, "operations_journal", None)
    if not isinstance(journal, OperationsJournal):
        journal = OperationsJournal(services.store, PostgresStreamHead(services.pool), clock=_utc_now)
        request.app.state.operations_journal = journal
    registry = getattr(services, "redrivers", None)
    return DeadLetterOperations(
        DeadLetterStore(services.pool),
        journal,
        registry if isinstance(registry, RedriverRegistry) else RedriverRegistry(),
    )


Operations = Annotated[DeadLetterOperations, Depends(_operations)]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _encode_cursor(after_id: int | None) -> str | None:
    return None if after_id is None else base64.urlsafe_b64encode(f"dl:{after_id}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        prefix, _, value = text.partition(":")
        if prefix != "dl" or not value.isdigit():
            raise ValueError(text)
        return int(value)
    except (ValueError, UnicodeError, binascii.Error) as e:
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API returned",
            details=[{"path": "cursor", "message": "not a next_cursor value"}],
        ) from e


def _min_age(min_age_seconds: int | None, older_than: str | None) -> timedelta | None:
    if min_age_seconds is not None and older_than is not None:
        raise ApiError(
            422,
            "validation_error",
            "give min_age_seconds or older_than, not both",
            details=[{"path": "older_than", "message": "conflicts with min_age_seconds"}],
        )
    if older_than is not None:
        return max(_utc_now() - parse_instant(older_than, "older_than"), timedelta(0))
    return None if min_age_seconds is None else timedelta(seconds=min_age_seconds)


def _letter_out(letter: DeadLetter, *, detail: bool = False) -> DeadLetterOut:
    raw = letter.raw_record
    return DeadLetterOut(
        id=letter.id,
        stage=letter.stage,
        flag=letter.flag_key,
        version=letter.version,
        event_id=None if letter.event_id is None else str(letter.event_id),
        error_class=letter.error_class,
        error_message=letter.error_message,
        waiting=letter.is_waiting,
        attempts=letter.attempts,
        first_failed_at=letter.first_failed_at,
        last_failed_at=letter.last_failed_at,
        kafka=None
        if letter.kafka is None
        else KafkaOut(topic=letter.kafka.topic, partition=letter.kafka.partition, offset=letter.kafka.offset),
        status=letter.status,
        resolved_at=letter.resolved_at,
        resolved_by=letter.resolved_by,
        resolve_reason=letter.resolve_reason,
        reprocessed_at=letter.reprocessed_at,
        event=letter.event_body if detail else None,
        raw_record_base64=base64.b64encode(raw).decode("ascii") if detail and raw is not None else None,
    )


def _redrive_out(result: RedriveResult) -> RedriveOut:
    return RedriveOut(
        redriven=len(result.letters),
        ids=[letter.id for letter in result.letters],
        by_stage=result.counts_by_stage(),
        reprocessed=result.reprocessed,
        failures=result.failures,
        more=result.more,
        event_id=None if result.event is None else str(result.event.event_id),
    )


@router.get("", response_model=DeadLetterListOut, summary="List dead letters")
async def list_dead_letters(
    operations: Operations,
    principal: Operator,
    stage: Stage | None = None,
    error_class: Annotated[str | None, Query(max_length=256)] = None,
    flag: Annotated[str | None, Query(max_length=200)] = None,
    min_age_seconds: Annotated[
        int | None, Query(ge=0, le=MAX_AGE_SECONDS, description="Failed first at least this long ago.")
    ] = None,
    older_than: Annotated[str | None, Query(description="ISO-8601 instant: failed first before it.")] = None,
    status: StatusFilter = "parked",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> DeadLetterListOut:
    flt = DeadLetterFilter(
        stage=stage,
        error_class=error_class,
        flag_key=flag,
        min_age=_min_age(min_age_seconds, older_than),
        status=None if status == "any" else status,
    )
    page = await operations.dlq.list(flt, after_id=_decode_cursor(cursor), limit=limit)
    return DeadLetterListOut(
        items=[_letter_out(letter) for letter in page.items], next_cursor=_encode_cursor(page.next_after_id)
    )


@router.get("/blocked-flags", response_model=BlockedFlagsOut, summary="Flags blocked behind dead letters")
async def blocked_flags(operations: Operations, principal: Operator) -> BlockedFlagsOut:
    stages: dict[str, list[str]] = {}
    for stage in STAGES:
        stages[stage] = sorted(await operations.dlq.blocked_flags(stage))
    return BlockedFlagsOut(stages=stages, total=len({f for flags in stages.values() for f in flags}))


@router.post("/redrive", response_model=RedriveOut, summary="Redrive the parked letters matching a filter")
async def redrive_matching(
    request: Request, operations: Operations, principal: Operator, body: RedriveFilterBody
) -> RedriveOut:
    if (
        body.stage is None
        and body.error_class is None
        and body.flag is None
        and (body.min_age_seconds is None and body.older_than is None)
    ):
        raise ApiError(
            422,
            "redrive_filter_required",
            "name at least one of stage, error_class, flag, min_age_seconds, older_than",
            details=[{"path": "$", "message": "no filter given"}],
        )
    flt = DeadLetterFilter(
        stage=body.stage,
        error_class=body.error_class,
        flag_key=body.flag,
        min_age=_min_age(body.min_age_seconds, body.older_than),
        status="parked",
    )
    described: dict[str, JsonValue] = body.model_dump(exclude={"reason"}, exclude_none=True)
    result = await operations.redrive_matching(
        flt,
        actor=principal.name,
        reason=body.reason,
        limit=body.limit,
        described_filter=described,
        correlation_id=request.state.request_id,
    )
    return _redrive_out(result)


@router.get("/{letter_id}", response_model=DeadLetterOut, summary="One dead letter, with its event")
async def get_dead_letter(operations: Operations, principal: Operator, letter_id: LetterId) -> DeadLetterOut:
    return _letter_out(await operations.dlq.get(letter_id), detail=True)


@router.post("/{letter_id}/redrive", response_model=RedriveOut, summary="Redrive one parked letter")
async def redrive_one(
    request: Request,
    operations: Operations,
    principal: Operator,
    letter_id: LetterId,
    body: RedriveBody | None = None,
) -> RedriveOut:
    result = await operations.redrive(
        letter_id,
        actor=principal.name,
        reason=None if body is None else body.reason,
        correlation_id=request.state.request_id,
    )
    return _redrive_out(result)


@router.delete("/{letter_id}", response_model=PurgeOut, summary="Purge a parked letter (reason required)")
async def purge(
    request: Request, operations: Operations, principal: Operator, letter_id: LetterId, body: PurgeBody
) -> PurgeOut:
    letter, event = await operations.purge(
        letter_id, actor=principal.name, reason=body.reason, correlation_id=request.state.request_id
    )
    return PurgeOut(letter=_letter_out(letter), event_id=str(event.event_id), event_version=event.version)
