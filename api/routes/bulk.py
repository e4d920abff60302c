"""Bulk enable / disable / archive of flags: one command (one event) per flag; the answer lists
which succeeded and why the others failed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from api.deps import Services, Writer
from api.routes._manage import command_meta
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN
from events.commands.transfer import run_bulk

__all__ = ["MAX_BULK_FLAGS", "router"]

router = APIRouter(prefix="/api/v1/bulk", tags=["bulk"])

MAX_BULK_FLAGS = 500


class BulkRequest(BaseModel):
    action: Literal["enable", "disable", "archive"]
    flags: list[Annotated[str, Field(pattern=FLAG_KEY_PATTERN)]] = Field(
        min_length=1, max_length=MAX_BULK_FLAGS
    )
    environment: str | None = Field(default=None, pattern=ENVIRONMENT_PATTERN)
    reason: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _environment_when_needed(self) -> BulkRequest:
        if self.action != "archive" and self.environment is None:
            raise ValueError(f"{self.action} needs an environment")
        if len(set(self.flags)) != len(self.flags):
            raise ValueError("a flag is listed more than once")
        return self


class BulkResponse(BaseModel):
    action: str
    environment: str | None
    succeeded: list[str]
    failed: list[str]
    results: list[dict[str, Any]]


@router.post("/flags", response_model=BulkResponse, summary="Enable, disable or archive many flags")
async def bulk_flags(
    request: Request, services: Services, principal: Writer, body: BulkRequest
) -> BulkResponse:
    meta = command_meta(request, principal.name, None, body.model_dump(mode="json"))
    results = await run_bulk(
        services.execute, body.action, body.flags, body.environment, meta, reason=body.reason
    )
    return BulkResponse(
        action=body.action,
        environment=body.environment,
        succeeded=[r["key"] for r in results if r["ok"]],
        failed=[r["key"] for r in results if not r["ok"]],
        results=results,
    )
