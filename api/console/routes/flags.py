"""Flags: the list (search, tag, environment, server-side paging), create, a flag's page per environment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import Permission
from api.console.deps import ChangeFlags, ViewFlags, ViewWrite, render
from api.console.editing import attributes_of, execute_command
from api.console.listing import list_all_flags
from api.deps import Services
from api.errors import ApiError
from core.commands import CreateFlag, DisableFlag, EnableFlag
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN, EnvironmentConfig, Flag
from core.validation import issues_from_validation_error

__all__ = ["PAGE_SIZE", "router"]

router = APIRouter()
PAGE_SIZE = 50
FlagKey = Annotated[str, Path(pattern=FLAG_KEY_PATTERN)]
EnvName = Annotated[str, Path(pattern=ENVIRONMENT_PATTERN)]


@router.get("/flags", response_class=HTMLResponse)
async def list_flags(
    request: Request,
    services: Services,
    session: ViewFlags,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[str, Query(max_length=64)] = "",
    env: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    archived: bool = False,
) -> HTMLResponse:
    environments = await services.queries.environments()
    chosen = env if env in environments else (environments[0] if environments else "")
    every = await list_all_flags(services.redis, services.keyspace)
    tags = sorted({t for row in every for t in row.tags})
    rows = [row for row in every if (archived or not row.archived) and row.matches(q.strip(), tag)]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return render(
        request,
        "flags.html",
        session,
        rows=shown,
        total=len(rows),
        page=page,
        pages=pages,
        q=q,
        tag=tag,
        tags=tags,
        env=chosen,
        environments=environments,
        archived=archived,
        partial=request.headers.get("hx-request") == "true",
    )


@router.post("/flags", response_class=HTMLResponse)
async def create_flag(
    request: Request,
    services: Services,
    session: ChangeFlags,
    key: Annotated[str, Form(max_length=128)],
    name: Annotated[str, Form(max_length=256)] = "",
    description: Annotated[str, Form(max_length=4096)] = "",
    tags: Annotated[str, Form(max_length=1000)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    from pydantic import ValidationError

    data: dict[str, Any] = {
        "key": key.strip(),
        "name": name.strip(),
        "description": description,
        "tags": [t.strip() for t in tags.split(",") if t.strip()],
    }
    try:
        flag = Flag.model_validate(data)
    except ValidationError as e:
        return render(
            request,
            "create.html",
            session,
            status_code=422,
            form=data,
            tags_text=tags,
            issues=issues_from_validation_error(e),
        )
    command = CreateFlag(flag_key=flag.key, flag=flag, reason=reason or None, expected_version=0)
    failure = await execute_command(request, services, session, command)
    if failure is not None:
        return render(
            request,
            "create.html",
            session,
            status_code=failure["status"],
            form=data,
            tags_text=tags,
            issues=failure["issues"],
        )
    return RedirectResponse(f"/ui/flags/{flag.key}", status_code=303)


@router.get("/flags/new", response_class=HTMLResponse)
async def new_flag(request: Request, session: ViewWrite) -> HTMLResponse:
    return render(request, "create.html", session, form={}, tags_text="", issues=[])


@router.get("/flags/{key}", response_class=HTMLResponse)
async def flag_home(services: Services, session: ViewFlags, key: FlagKey) -> RedirectResponse:
    state = await services.queries.get_flag(key)
    if state is None or state.flag is None:
        raise ApiError(404, "flag_not_found", f"flag {key!r} does not exist")
    environments = sorted(state.flag.environments) or await services.queries.environments() or ["production"]
    return RedirectResponse(f"/ui/flags/{key}/env/{environments[0]}", status_code=303)


@router.get("/flags/{key}/env/{env}", response_class=HTMLResponse)
async def flag_page(
    request: Request, services: Services, session: ViewFlags, key: FlagKey, env: EnvName
) -> HTMLResponse:
    state = await services.queries.get_flag(key)
    if state is None or state.flag is None:
        raise ApiError(404, "flag_not_found", f"flag {key!r} does not exist")
    flag = state.flag
    config = flag.environments.get(env, EnvironmentConfig())
    environments = sorted(set(flag.environments) | set(await services.queries.environments()) | {env})
    reader = await services.readers.get(env)
    data = {
        "flag": flag.key,
        "environment": env,
        "version": state.version,
        "config": config.model_dump(mode="json", exclude_none=True),
        "variations": [v.key for v in flag.variations],
        "attributes": attributes_of(flag, reader.snapshot.segments),
        "segments": sorted(reader.snapshot.segments),
        "canWrite": session.principal.can(Permission.WRITE_FLAGS),
        "urls": {
            "preview": f"/ui/flags/{key}/env/{env}/preview",
            "save": f"/ui/flags/{key}/env/{env}/save",
        },
    }
    return render(
        request,
        "flag.html",
        session,
        flag=flag,
        env=env,
        version=state.version,
        config=config,
        environments=environments,
        data=data,
    )


@router.post("/flags/{key}/env/{env}/toggle", response_class=HTMLResponse)
async def toggle(
    request: Request,
    services: Services,
    session: ChangeFlags,
    key: FlagKey,
    env: EnvName,
    enabled: Annotated[str, Form(pattern="^(on|off)$")],
    expected_version: Annotated[int, Form(ge=0)],
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    command_type = EnableFlag if enabled == "on" else DisableFlag
    command = command_type(
        flag_key=key, environment=env, reason=reason or None, expected_version=expected_version
    )
    failure = await execute_command(request, services, session, command, wait_env=env)
    if failure is not None:
        return render(
            request,
            "problem.html",
            session,
            status_code=failure["status"],
            failure=failure,
            back=f"/ui/flags/{key}/env/{env}",
        )
    return RedirectResponse(f"/ui/flags/{key}/env/{env}", status_code=303)
