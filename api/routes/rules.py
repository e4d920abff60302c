"""Rules tooling for the console: validate, preview, templates, and the attribute catalog.

Nothing here writes a flag: validation and preview evaluate a configuration that need not be saved.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, JsonValue

from api.deps import FlagReader, Services
from api.errors import parse_instant
from api.routes._manage import attribute_catalog, rules_service, segment_service
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN
from core.templates import TEMPLATES
from events.commands.attributes import flush_observed_contexts

__all__ = ["MAX_PREVIEW_CONTEXTS", "router"]

log = structlog.get_logger("api.routes.rules")

router = APIRouter(prefix="/api/v1", tags=["rules"])

MAX_PREVIEW_CONTEXTS = 10_000


class RulesRequest(BaseModel):
    flag: Annotated[str, Field(pattern=FLAG_KEY_PATTERN)] | dict[str, Any] = Field(
        description="A saved flag's key, or a whole flag not saved yet"
    )
    environment: str = Field(pattern=ENVIRONMENT_PATTERN)
    config: dict[str, Any] = Field(description="EnvironmentConfig to check (need not be saved)")


class PreviewRequest(RulesRequest):
    contexts: list[dict[str, JsonValue]] = Field(min_length=1, max_length=MAX_PREVIEW_CONTEXTS)
    now: str | None = Field(default=None, description="Evaluate as of this instant (ISO-8601); default now")


class ValidateResponse(BaseModel):
    valid: bool
    problems: list[dict[str, str]]
    warnings: list[dict[str, str]]
    complexity: int


class PreviewResponse(BaseModel):
    results: list[dict[str, Any]]
    counts: dict[str, int]
    version: int
    warnings: list[dict[str, str]]


class TemplateList(BaseModel):
    items: list[dict[str, Any]]


class AttributeList(BaseModel):
    items: list[dict[str, Any]]


@router.post(
    "/rules/validate", response_model=ValidateResponse, summary="Check a configuration before saving"
)
async def validate_rules(services: Services, principal: FlagReader, body: RulesRequest) -> ValidateResponse:
    report = await rules_service(services).validate(body.flag, body.environment, body.config)
    return ValidateResponse(**report.to_dict())


@router.post(
    "/rules/preview", response_model=PreviewResponse, summary="Evaluate contexts under a configuration"
)
async def preview_rules(services: Services, principal: FlagReader, body: PreviewRequest) -> PreviewResponse:
    now = parse_instant(body.now, "now") if body.now else datetime.now(UTC)
    started = time.perf_counter()
    report = await rules_service(services).preview(
        body.flag, body.environment, body.config, body.contexts, now
    )
    await attribute_catalog(services).record_contexts(body.contexts)
    log.info(
        "rules.previewed", contexts=len(body.contexts), ms=round((time.perf_counter() - started) * 1000, 2)
    )
    return PreviewResponse(**report.to_dict())


@router.get("/rules/templates", response_model=TemplateList, summary="Rule templates (valid configurations)")
async def list_templates(principal: FlagReader) -> TemplateList:
    return TemplateList(items=[t.to_dict() for t in TEMPLATES])


@router.get("/attributes", response_model=AttributeList, summary="Attributes seen in rules and contexts")
async def list_attributes(
    services: Services,
    principal: FlagReader,
    prefix: Annotated[str | None, Query(max_length=256, description="Only names starting with this")] = None,
) -> AttributeList:
    flags = [view.flag for view in await services.queries.list_flags(None) if not view.flag.archived]
    segments = list((await segment_service(services).live_segments()).values())
    await flush_observed_contexts(services)  # this process's sampled evaluations, stored now
    items = await attribute_catalog(services).describe(flags, segments)
    if prefix:
        items = [item for item in items if str(item["name"]).startswith(prefix)]
    return AttributeList(items=items)
