"""Segments: create, list, read, replace, archive. Writers change them; readers read them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import FlagReader, IdempotencyKey, Services, Writer
from api.routes._manage import command_meta, outcome_response, parse_model, segment_service
from api.schemas import CommandResponse, ReasonBody
from core.model import FLAG_KEY_PATTERN, Segment
from core.state import SegmentState

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/segments", tags=["segments"])

SegmentKeyPath = Annotated[str, Path(pattern=FLAG_KEY_PATTERN, description="Segment key")]
SegmentBody = Annotated[
    dict[str, Any],
    Body(
        description="A Segment (see docs/model.md) plus optional 'reason' and 'expected_version'.",
        examples=[{"key": "beta-testers", "name": "Beta testers", "included": ["user-1"], "reason": "beta"}],
    ),
]


class SegmentOut(BaseModel):
    key: str
    version: int
    segment: dict[str, Any]
    updated_at: str | None = None


class SegmentListResponse(BaseModel):
    items: list[SegmentOut] = Field(default_factory=list)


def _split(body: dict[str, Any]) -> tuple[ReasonBody, dict[str, Any]]:
    data = dict(body)
    meta = parse_model(ReasonBody, {k: data.pop(k) for k in ("reason", "expected_version") if k in data})
    return meta, data


def _out(state: SegmentState) -> SegmentOut:
    assert state.segment is not None
    return SegmentOut(
        key=state.key,
        version=state.version,
        segment=state.segment.model_dump(mode="json", by_alias=True),
        updated_at=state.updated_at.isoformat() if state.updated_at else None,
    )


@router.post("", status_code=201, response_model=CommandResponse, summary="Create a segment")
async def create_segment(
    request: Request,
    services: Services,
    principal: Writer,
    body: SegmentBody,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    meta, data = _split(body)
    segment = parse_model(Segment, data)
    outcome = await segment_service(services).create(
        segment, command_meta(request, principal.name, idempotency_key, body), reason=meta.reason
    )
    return outcome_response(outcome, f"/api/v1/segments/{segment.key}")


@router.get("", response_model=SegmentListResponse, summary="List segments")
async def list_segments(
    services: Services, principal: FlagReader, include_archived: Annotated[bool, Query()] = False
) -> SegmentListResponse:
    states = await segment_service(services).list(include_archived=include_archived)
    return SegmentListResponse(items=[_out(s) for s in states])


@router.get("/{key}", response_model=SegmentOut, summary="One segment with its version")
async def get_segment(services: Services, principal: FlagReader, key: SegmentKeyPath) -> SegmentOut:
    return _out(await segment_service(services).get(key))


@router.put("/{key}", response_model=CommandResponse, summary="Replace a segment's definition")
async def update_segment(
    request: Request,
    services: Services,
    principal: Writer,
    key: SegmentKeyPath,
    body: SegmentBody,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    meta, data = _split(body)
    data.setdefault("key", key)
    segment = parse_model(Segment, data)
    outcome = await segment_service(services).update(
        key,
        segment,
        command_meta(request, principal.name, idempotency_key, body),
        reason=meta.reason,
        expected_version=meta.expected_version,
    )
    return outcome_response(outcome, f"/api/v1/segments/{key}")


@router.post(
    "/{key}/archive", response_model=CommandResponse, summary="Archive a segment (refused while used)"
)
async def archive_segment(
    request: Request,
    services: Services,
    principal: Writer,
    key: SegmentKeyPath,
    idempotency_key: IdempotencyKey = None,
    body: ReasonBody | None = None,
) -> JSONResponse:
    reason_body = body or ReasonBody()
    outcome = await segment_service(services).archive(
        key,
        command_meta(request, principal.name, idempotency_key, reason_body.model_dump(mode="json")),
        reason=reason_body.reason,
        expected_version=reason_body.expected_version,
    )
    return outcome_response(outcome, f"/api/v1/segments/{key}")
