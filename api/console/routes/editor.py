"""The flag editor's JSON endpoints (called by static/console.js): live preview and save.

Preview evaluates the *unsaved* configuration server-side with ``core.evaluation`` against the live
snapshot of the environment (segments, prerequisites) and validates it with ``core.validation``, so
field errors show at their field before saving. Save is ``SetEnvironmentConfig`` with the version the
page was built from: a lost race answers 409 with who changed the flag meanwhile and what.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.console.deps import ChangeFlags, ViewFlags
from api.console.editing import MAX_PREVIEW_CONTEXTS, execute_command, parse_config, preview_contexts
from api.deps import Services
from api.errors import ApiError
from core.commands import SetEnvironmentConfig
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN, Flag

__all__ = ["router"]

router = APIRouter()
FlagKey = Annotated[str, Path(pattern=FLAG_KEY_PATTERN)]
EnvName = Annotated[str, Path(pattern=ENVIRONMENT_PATTERN)]


class PreviewBody(BaseModel):
    config: dict[str, Any]
    contexts: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_PREVIEW_CONTEXTS)


class SaveBody(BaseModel):
    config: dict[str, Any]
    expected_version: int = Field(ge=0)
    reason: str | None = Field(default=None, max_length=1000)


async def _flag(services: Services, key: str) -> tuple[Flag, int]:
    state = await services.queries.get_flag(key)
    if state is None or state.flag is None:
        raise ApiError(404, "flag_not_found", f"flag {key!r} does not exist")
    return state.flag, state.version


@router.post("/flags/{key}/env/{env}/preview")
async def preview(
    services: Services,
    session: ViewFlags,
    key: FlagKey,
    env: EnvName,
    body: Annotated[PreviewBody, Body()],
) -> JSONResponse:
    flag, version = await _flag(services, key)
    config, issues = parse_config(body.config)
    if config is None:
        return JSONResponse({"issues": issues, "results": [], "counts": {}})
    prerequisites = []
    for prerequisite in config.prerequisites:
        state = await services.queries.get_flag(prerequisite.flag)
        if state is not None and state.flag is not None:
            prerequisites.append(state.flag)
    reader = await services.readers.get(env)
    answer = preview_contexts(reader.snapshot, flag, version, env, config, body.contexts, prerequisites)
    return JSONResponse(answer)


@router.post("/flags/{key}/env/{env}/save")
async def save(
    request: Request,
    services: Services,
    session: ChangeFlags,
    key: FlagKey,
    env: EnvName,
    body: Annotated[SaveBody, Body()],
) -> JSONResponse:
    config, issues = parse_config(body.config)
    if config is None:
        return JSONResponse({"code": "validation_error", "issues": issues}, status_code=422)
    command = SetEnvironmentConfig(
        flag_key=key,
        environment=env,
        config=config,
        reason=body.reason or None,
        expected_version=body.expected_version,
    )
    failure = await execute_command(request, services, session, command, wait_env=env)
    if failure is not None:
        return JSONResponse(failure, status_code=failure["status"])
    return JSONResponse({"version": request.state.console_version})
