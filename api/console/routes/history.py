"""A flag's history as a timeline (field-level diffs, actor, reason), "what did this user see at time T",
roll back to a version and undo of the last change (both the compensating ``RollBackEnvironment``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.deps import ChangeRollback, ViewAudit, render
from api.console.editing import execute_command
from api.deps import Services
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN
from events.audit.access import log_audit_access
from events.audit.history import AuditFilters, HistoryEntry, PostgresAuditLog

__all__ = ["router"]

router = APIRouter()
FlagKey = Annotated[str, Path(pattern=FLAG_KEY_PATTERN)]
EnvName = Annotated[str, Path(pattern=ENVIRONMENT_PATTERN)]


def _undo_target(entries: list[HistoryEntry], env: str) -> HistoryEntry | None:
    """The last change made to ``env`` (undo rolls back to the version just before it)."""
    changes = [e for e in entries if e.environment == env]
    return changes[-1] if changes else None


async def _entries(services: Services, key: str, env: str | None) -> list[HistoryEntry]:
    log_audit_access("console", "flag_history", {"flag": key, "environment": env})
    entries: list[HistoryEntry] = []
    after: int | None = None
    audit = PostgresAuditLog(services.pool)
    while True:
        page = await services.read_postgres(
            audit.history, key, AuditFilters(environment=env), after_version=after, limit=500
        )
        entries += page.entries
        if page.next_cursor is None or not page.entries or len(entries) >= 5000:
            return entries
        after = page.entries[-1].version


@router.get("/flags/{key}/history", response_class=HTMLResponse)
async def history(
    request: Request,
    services: Services,
    session: ViewAudit,
    key: FlagKey,
    env: Annotated[str, Query(pattern=ENVIRONMENT_PATTERN)] = "production",
    at: Annotated[str, Query(max_length=40)] = "",
    user: Annotated[str, Query(max_length=2000)] = "",
) -> HTMLResponse:
    entries = await _entries(services, key, env)
    state = await services.queries.get_flag(key)
    as_of = await _as_of(services, session, key, env, at, user) if at else None
    return render(
        request,
        "history.html",
        session,
        key=key,
        env=env,
        entries=list(reversed(entries)),
        version=state.version if state else 0,
        undo=_undo_target(entries, env),
        at=at,
        user=user,
        as_of=as_of,
    )


async def _as_of(services: Services, session: Any, key: str, env: str, at: str, user: str) -> dict[str, Any]:
    try:
        instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return {"error": "the time is not a valid date and time", "path": "at"}
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    text = user.strip()
    try:
        context = json.loads(text) if text.startswith("{") else {"targetingKey": text}
    except json.JSONDecodeError:
        return {"error": "the user is neither a key nor a JSON object", "path": "user"}
    if not isinstance(context, dict):
        return {"error": "the user must be a JSON object", "path": "user"}
    results = await services.evaluate_as_of(env, context, instant, [key], session.principal)
    result = results.get(key)
    return {"instant": instant.isoformat(), "context": context, "result": result}


@router.post("/flags/{key}/env/{env}/rollback", response_class=HTMLResponse)
async def rollback(
    request: Request,
    services: Services,
    session: ChangeRollback,
    key: FlagKey,
    env: EnvName,
    to_version: Annotated[int, Form(ge=0)],
    expected_version: Annotated[int, Form(ge=0)],
    reason: Annotated[str, Form(min_length=1, max_length=1000)],
) -> Response:
    command = await services.commands.rollback_command(
        key, env, to_version, reason=reason, expected_version=expected_version
    )
    failure = await execute_command(request, services, session, command, wait_env=env)
    if failure is not None:
        return render(
            request,
            "problem.html",
            session,
            status_code=failure["status"],
            failure=failure,
            back=f"/ui/flags/{key}/history?env={env}",
        )
    return RedirectResponse(f"/ui/flags/{key}/history?env={env}", status_code=303)
