"""flagd import/export: ``POST /api/v1/flagd/import?environment=ENV[&dry_run=true]`` with a flagd JSON
body (writers), ``GET /api/v1/flagd/export?environment=ENV`` (readers). What cannot be translated
exactly is a 422 ``flagd_unsupported`` naming the JSON path. A dry run answers the plan only.
Each flag is one or two commands (events) of its own: an import is not atomic across flags.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import FlagReader, Services, Writer
from core.flagd import export_flagd, import_flagd, parse_flagd, plan_import
from core.model import ENVIRONMENT_PATTERN, Flag
from events.commands.service import CommandMeta

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/flagd", tags=["flagd"])

EnvironmentQuery = Annotated[str, Query(pattern=ENVIRONMENT_PATTERN, description="The environment")]


@router.post("/import", summary="Import flagd flag definitions into one environment")
async def import_flags(
    request: Request,
    services: Services,
    principal: Writer,
    environment: EnvironmentQuery,
    dry_run: bool = False,
    reason: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    flags = import_flagd(parse_flagd(await request.body()), environment)
    existing: dict[str, tuple[Flag, int]] = {}
    for flag in flags:
        state = await services.queries.get_flag(flag.key)
        if state is not None and state.flag is not None:
            existing[flag.key] = (state.flag, state.version)
    steps = plan_import(flags, existing, environment, reason or "flagd import")
    results: list[dict[str, Any]] = []
    for step in steps:
        version = existing[step.key][1] if step.key in existing else 0
        if not dry_run:
            for command in step.commands:
                meta = CommandMeta(actor=principal.name, correlation_id=request.state.request_id)
                version = (await services.execute(command, meta)).version
        results.append({"key": step.key, "action": str(step.action), "version": version})
    return {"environment": environment, "dry_run": dry_run, "flags": results}


@router.get("/export", summary="Export one environment as flagd JSON")
async def export_flags(
    services: Services, principal: FlagReader, environment: EnvironmentQuery
) -> dict[str, Any]:
    views = await services.queries.list_flags(environment)
    return export_flagd([view.flag for view in views], environment)
