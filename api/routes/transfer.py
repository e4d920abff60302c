"""Import and export of flags and segments as JSON. An import is planned first (a dry run, the
default) and applied only with the reviewed plan's id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel

from api.deps import FlagReader, Services, Writer
from api.errors import ApiError
from api.routes._manage import command_meta, parse_model, transfer_service
from core.model import ENVIRONMENT_PATTERN
from core.transfer import ExportDocument

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["import/export"])


class ImportResponse(BaseModel):
    dry_run: bool
    plan_id: str
    changes: list[dict[str, Any]]
    results: list[dict[str, Any]] | None = None
    succeeded: int | None = None
    failed: int | None = None


@router.get("/export", response_model=ExportDocument, summary="Export flags and segments as JSON")
async def export(
    services: Services,
    principal: FlagReader,
    environment: Annotated[
        str | None, Query(pattern=ENVIRONMENT_PATTERN, description="Only this environment")
    ] = None,
    include_archived: bool = False,
) -> ExportDocument:
    return await transfer_service(services).export(environment, include_archived=include_archived)


@router.post(
    "/import", response_model=ImportResponse, summary="Import flags and segments (dry run by default)"
)
async def import_document(
    request: Request,
    services: Services,
    principal: Writer,
    body: Annotated[dict[str, Any], Body(description="An export document (GET /api/v1/export)")],
    dry_run: Annotated[bool, Query(description="Only compute the plan (the default)")] = True,
    plan_id: Annotated[
        str | None, Query(max_length=64, description="The dry run's plan_id, to apply")
    ] = None,
    reason: Annotated[str | None, Query(max_length=1024)] = None,
) -> ImportResponse:
    document = parse_model(ExportDocument, body)
    service = transfer_service(services)
    if dry_run:
        plan = await service.plan(document)
        return ImportResponse(dry_run=True, **plan.to_dict())
    if not plan_id:
        raise ApiError(
            422,
            "validation_error",
            "an import needs the plan_id of its dry run",
            details=[{"path": "query.plan_id", "message": "required when dry_run=false"}],
        )
    meta = command_meta(request, principal.name, None, body)
    plan, results = await service.apply(document, plan_id, meta, reason=reason)
    failed = sum(1 for r in results if not r["ok"])
    return ImportResponse(
        dry_run=False, **plan.to_dict(), results=results, succeeded=len(results) - failed, failed=failed
    )
