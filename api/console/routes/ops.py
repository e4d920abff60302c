"""Operators' pages: dead letters (list, inspect, redrive, purge with a reason) and incidents of the
rollback worker. Both use the same services as the API (``DeadLetterOperations``, ``AlertQueries``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.deps import ChangeOps, ViewIncidents, ViewOps, render
from api.deps import Services
from api.routes.deadletters import Operations
from events.deadletters.models import DeadLetterFilter
from events.rollback.alerts import AlertQueries

__all__ = ["router"]

router = APIRouter()
LetterId = Annotated[int, Path(ge=1)]


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request,
    operations: Operations,
    session: ViewOps,
    status: Annotated[str, Query(pattern="^(parked|redriven|purged|any)$")] = "parked",
    after: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    flt = DeadLetterFilter(status=None if status == "any" else status)  # type: ignore[arg-type]
    page = await operations.dlq.list(flt, after_id=after, limit=50)
    return render(
        request, "deadletters.html", session, letters=page.items, next_after=page.next_after_id, status=status
    )


@router.get("/dead-letters/{letter_id}", response_class=HTMLResponse)
async def dead_letter(
    request: Request, operations: Operations, session: ViewOps, letter_id: LetterId
) -> HTMLResponse:
    return render(request, "deadletter.html", session, letter=await operations.dlq.get(letter_id))


@router.post("/dead-letters/{letter_id}/redrive", response_class=HTMLResponse)
async def redrive(
    request: Request,
    operations: Operations,
    session: ChangeOps,
    letter_id: LetterId,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    await operations.redrive(
        letter_id,
        actor=session.principal.name,
        reason=reason or None,
        correlation_id=getattr(request.state, "request_id", None),
    )
    return RedirectResponse(f"/ui/dead-letters/{letter_id}", status_code=303)


@router.post("/dead-letters/{letter_id}/purge", response_class=HTMLResponse)
async def purge(
    request: Request,
    operations: Operations,
    session: ChangeOps,
    letter_id: LetterId,
    reason: Annotated[str, Form(min_length=1, max_length=1000)],
) -> Response:
    await operations.purge(
        letter_id,
        actor=session.principal.name,
        reason=reason,
        correlation_id=getattr(request.state, "request_id", None),
    )
    return RedirectResponse(f"/ui/dead-letters/{letter_id}", status_code=303)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(
    request: Request,
    services: Services,
    session: ViewIncidents,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    page = await AlertQueries(services.pool).incidents(limit=50, before=before)
    return render(request, "incidents.html", session, items=page.items, next_cursor=page.next_cursor)
