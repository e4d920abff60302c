"""Flag commands and reads. Handlers parse, authorise, call the command service, shape a response."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import FlagReader, IdempotencyKey, IfMatch, Rollbacker, Services, Writer
from api.errors import ApiError, parse_instant
from api.schemas import CommandResponse, FlagListResponse, FlagOut, MetadataPatch, ReasonBody, RollbackRequest
from api.strict import parse_strict
from core.commands import (
    ArchiveFlag,
    Command,
    CreateFlag,
    DisableFlag,
    EnableFlag,
    RestoreFlag,
    SetEnvironmentConfig,
    UpdateFlagMetadata,
)
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN, EnvironmentConfig, Flag
from core.state import FlagState
from events.commands.service import CommandMeta
from events.store.idempotency import compute_request_hash

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/flags", tags=["flags"])

FlagKeyPath = Annotated[str, Path(pattern=FLAG_KEY_PATTERN, description="Flag key")]
EnvPath = Annotated[str, Path(pattern=ENVIRONMENT_PATTERN, description="Environment name")]
Wait = Annotated[
    Literal["projected"] | None, Query(description="Return once the read model shows the change.")
]
FlagBody = Annotated[
    dict[str, Any],
    Body(
        description="A Flag (see docs/model.md) plus an optional 'reason'.",
        examples=[{"key": "new-checkout", "name": "New checkout", "reason": "launch"}],
    ),
]
EnvironmentBody = Annotated[
    dict[str, Any],
    Body(description="EnvironmentConfig (see docs/model.md), plus optional 'reason' and 'expected_version'."),
]
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


def _expected_version(if_match: str | None, body_value: int | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return body_value
    match = _ETAG.match(if_match)
    if match is None:
        raise ApiError(
            400,
            "invalid_if_match",
            'If-Match must be a flag version such as "7"',
            details=[{"path": "headers.if-match", "message": "not a version"}],
        )
    header_value = int(match.group(1))
    if body_value is not None and body_value != header_value:
        raise ApiError(
            400,
            "invalid_if_match",
            "If-Match and expected_version disagree",
            details=[{"path": "expected_version", "message": "differs from If-Match"}],
        )
    return header_value


async def _run(
    request: Request,
    services: Services,
    principal_name: str,
    command: Command,
    *,
    idempotency_key: str | None,
    body: Any,
    wait: str | None,
    environment: str | None = None,
) -> JSONResponse:
    meta = CommandMeta(
        actor=principal_name,
        correlation_id=request.state.request_id,
        idempotency_key=idempotency_key,
        request_hash=compute_request_hash(request.method, request.url.path, body)
        if idempotency_key
        else None,
    )
    outcome = await services.execute(command, meta)
    payload = dict(outcome.response)
    if wait == "projected" and outcome.events:
        payload["projected"] = await services.wait_projected(outcome.stream, outcome.version, environment)
    headers = {"ETag": f'"{outcome.version}"', "Location": f"/api/v1/flags/{payload.get('key', '')}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(status_code=outcome.status, content=payload, headers=headers)


def _command_fields(data: dict[str, Any]) -> ReasonBody:
    """Take ``reason`` / ``expected_version`` out of a body whose rest is a model of its own, validated."""
    return _parse(ReasonBody, {k: data.pop(k) for k in ("reason", "expected_version") if k in data})  # type: ignore[no-any-return]


def _parse(model: type[Any], data: Any, prefix: str = "") -> Any:
    return parse_strict(model, data, prefix)  # "yes" is not a bool, "1" not an int: 422 with the path


@router.post("", status_code=201, response_model=CommandResponse, summary="Create a flag")
async def create_flag(
    request: Request,
    services: Services,
    principal: Writer,
    body: FlagBody,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = None,
) -> JSONResponse:
    data = dict(body)
    meta = _command_fields(data)
    flag = _parse(Flag, data)
    command = CreateFlag(flag_key=flag.key, flag=flag, reason=meta.reason, expected_version=0)
    return await _run(
        request, services, principal.name, command, idempotency_key=idempotency_key, body=body, wait=wait
    )


@router.patch("/{key}", response_model=CommandResponse, summary="Update a flag's metadata")
async def update_metadata(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    body: MetadataPatch,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
) -> JSONResponse:
    fields = body.model_dump(exclude_unset=True, exclude={"reason", "expected_version"})
    command = _parse(
        UpdateFlagMetadata,
        {
            **fields,
            "flag_key": key,
            "reason": body.reason,
            "expected_version": _expected_version(if_match, body.expected_version),
        },
    )
    return await _run(
        request,
        services,
        principal.name,
        command,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json", exclude_unset=True),
        wait=wait,
    )


@router.put(
    "/{key}/environments/{env}",
    response_model=CommandResponse,
    summary="Replace an environment's whole configuration",
)
async def set_environment(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    env: EnvPath,
    body: EnvironmentBody,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
) -> JSONResponse:
    data = dict(body)
    meta = _command_fields(data)
    config = _parse(EnvironmentConfig, data)
    command = SetEnvironmentConfig(
        flag_key=key,
        environment=env,
        config=config,
        reason=meta.reason,
        expected_version=_expected_version(if_match, meta.expected_version),
    )
    return await _run(
        request,
        services,
        principal.name,
        command,
        idempotency_key=idempotency_key,
        body=body,
        wait=wait,
        environment=env,
    )


async def _simple(
    request: Request,
    services: Services,
    principal_name: str,
    command_type: type[Any],
    *,
    key: str,
    env: str | None,
    body: ReasonBody | None,
    if_match: str | None,
    idempotency_key: str | None,
    wait: str | None,
) -> JSONResponse:
    body = body or ReasonBody()
    fields: dict[str, Any] = {
        "flag_key": key,
        "reason": body.reason,
        "expected_version": _expected_version(if_match, body.expected_version),
    }
    if env is not None:
        fields["environment"] = env
    command = command_type(**fields)
    return await _run(
        request,
        services,
        principal_name,
        command,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json", exclude_unset=True),
        wait=wait,
        environment=env,
    )


@router.post("/{key}/environments/{env}/enable", response_model=CommandResponse, summary="Turn a flag on")
async def enable(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    env: EnvPath,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
    body: ReasonBody | None = None,
) -> JSONResponse:
    return await _simple(
        request,
        services,
        principal.name,
        EnableFlag,
        key=key,
        env=env,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
        wait=wait,
    )


@router.post("/{key}/environments/{env}/disable", response_model=CommandResponse, summary="Turn a flag off")
async def disable(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    env: EnvPath,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
    body: ReasonBody | None = None,
) -> JSONResponse:
    return await _simple(
        request,
        services,
        principal.name,
        DisableFlag,
        key=key,
        env=env,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
        wait=wait,
    )


@router.post("/{key}/archive", response_model=CommandResponse, summary="Archive a flag")
async def archive(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
    body: ReasonBody | None = None,
) -> JSONResponse:
    return await _simple(
        request,
        services,
        principal.name,
        ArchiveFlag,
        key=key,
        env=None,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
        wait=wait,
    )


@router.post("/{key}/restore", response_model=CommandResponse, summary="Restore an archived flag")
async def restore(
    request: Request,
    services: Services,
    principal: Writer,
    key: FlagKeyPath,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
    body: ReasonBody | None = None,
) -> JSONResponse:
    return await _simple(
        request,
        services,
        principal.name,
        RestoreFlag,
        key=key,
        env=None,
        body=body,
        if_match=if_match,
        idempotency_key=idempotency_key,
        wait=wait,
    )


@router.post(
    "/{key}/environments/{env}/rollback",
    response_model=CommandResponse,
    summary="Put back the environment configuration in force at a version (compensating event)",
)
async def rollback(
    request: Request,
    services: Services,
    principal: Rollbacker,
    key: FlagKeyPath,
    env: EnvPath,
    body: RollbackRequest,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    wait: Wait = None,
) -> JSONResponse:
    command = await services.commands.rollback_command(
        key,
        env,
        body.to_version,
        reason=body.reason,
        expected_version=_expected_version(if_match, body.expected_version),
    )
    return await _run(
        request,
        services,
        principal.name,
        command,
        idempotency_key=idempotency_key,
        body=body.model_dump(mode="json", exclude_unset=True),
        wait=wait,
        environment=env,
    )


@router.get("", response_model=FlagListResponse, summary="List flags (from the read model)")
async def list_flags(
    services: Services,
    principal: FlagReader,
    environment: Annotated[str | None, Query(pattern=ENVIRONMENT_PATTERN)] = None,
    tag: str | None = None,
    include_archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> FlagListResponse:
    views = await services.queries.list_flags(environment)
    items = [
        v for v in views if (include_archived or not v.flag.archived) and (tag is None or tag in v.flag.tags)
    ]
    if cursor:
        items = [s for s in items if s.key > cursor]
    page = items[:limit]
    next_cursor = page[-1].key if len(items) > limit else None
    return FlagListResponse(items=[_flag_out(s) for s in page], next_cursor=next_cursor)


@router.get(
    "/{key}", response_model=FlagOut, summary="One flag with its version (read model, or as of an instant)"
)
async def get_flag(
    response: Response,
    services: Services,
    principal: FlagReader,
    key: FlagKeyPath,
    as_of: Annotated[str | None, Query(description="ISO-8601 instant")] = None,
) -> FlagOut:
    state: FlagState | None
    if as_of is not None:
        state = await services.flag_as_of(key, parse_instant(as_of, "as_of"), principal)
    else:
        state = await services.queries.get_flag(key)
    if state is None or state.flag is None:
        raise ApiError(
            404, "flag_not_found", f"flag {key!r} does not exist" + (f" at {as_of}" if as_of else "")
        )
    response.headers["ETag"] = f'"{state.version}"'
    return _flag_out(state)


def _flag_out(state: Any) -> FlagOut:
    return FlagOut(
        key=state.key,
        version=state.version,
        flag=state.flag.model_dump(mode="json", by_alias=True),
        updated_at=updated_at.isoformat() if (updated_at := getattr(state, "updated_at", None)) else None,
    )
