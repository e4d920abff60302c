"""Segments (everyone reads, writers change) and API keys (admin only) on the management services."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.deps import ChangeFlags, ChangeKeys, ViewFlags, ViewKeys, render, sessions_of
from api.console.session import Session
from api.deps import Services
from api.routes._manage import command_meta, key_service, segment_service
from core.errors import DomainError
from core.model import FLAG_KEY_PATTERN, Segment
from core.validation import issues_from_validation_error
from events.commands.keys import CreatedKey
from events.store.keys import Role

__all__ = ["router"]

router = APIRouter()
SegmentKey = Annotated[str, Path(pattern=FLAG_KEY_PATTERN)]
KeyId = Annotated[str, Path(min_length=1, max_length=100)]
_SEGMENT_FIELDS = ("name", "description", "included", "excluded", "when")


@router.get("/segments", response_class=HTMLResponse)
async def segments(request: Request, services: Services, session: ViewFlags) -> HTMLResponse:
    states = await segment_service(services).list(include_archived=False)
    return render(request, "segments.html", session, states=states)


@router.get("/segments/{key}", response_class=HTMLResponse)
async def segment(request: Request, services: Services, session: ViewFlags, key: SegmentKey) -> HTMLResponse:
    state = await segment_service(services).get(key)
    return render(
        request,
        "segment.html",
        session,
        key=key,
        version=state.version,
        form=_form_of(state.segment),
        issues=[],
    )


def _form_of(segment: Segment | None) -> dict[str, str]:
    if segment is None:
        return {}
    data = segment.model_dump(mode="json", exclude_none=True)
    return {
        "name": segment.name,
        "description": segment.description,
        "included": "\n".join(segment.included),
        "excluded": "\n".join(segment.excluded),
        "when": json.dumps(data["when"], indent=2) if "when" in data else "",
    }


def _parse_segment(key: str, form: dict[str, str]) -> tuple[Segment | None, list[dict[str, str]]]:
    data: dict[str, Any] = {
        "key": key,
        "name": form["name"],
        "description": form["description"],
        "included": _lines(form["included"]),
        "excluded": _lines(form["excluded"]),
    }
    if form["when"].strip():
        try:
            data["when"] = json.loads(form["when"])
        except json.JSONDecodeError as e:
            return None, [{"path": "when", "message": f"not JSON: {e.msg} (line {e.lineno})"}]
    try:
        return Segment.model_validate(data), []
    except ValidationError as e:
        return None, issues_from_validation_error(e)


def _lines(text: str) -> list[str]:
    return [v.strip() for v in text.replace(",", "\n").splitlines() if v.strip()]


@router.post("/segments", response_class=HTMLResponse)
async def save_segment(
    request: Request,
    services: Services,
    session: ChangeFlags,
    key: Annotated[str, Form(max_length=128)],
    expected_version: Annotated[int, Form(ge=0)] = 0,
    name: Annotated[str, Form(max_length=256)] = "",
    description: Annotated[str, Form(max_length=4096)] = "",
    included: Annotated[str, Form(max_length=100_000)] = "",
    excluded: Annotated[str, Form(max_length=100_000)] = "",
    when: Annotated[str, Form(max_length=100_000)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    form = dict(zip(_SEGMENT_FIELDS, (name, description, included, excluded, when), strict=True))
    parsed, issues = _parse_segment(key.strip(), form)
    if parsed is not None:
        issues = await _store_segment(request, services, session, parsed, expected_version, reason)
    if issues:
        return render(
            request,
            "segment.html",
            session,
            status_code=422,
            key=key,
            version=expected_version,
            form=form,
            issues=issues,
        )
    return RedirectResponse(f"/ui/segments/{parsed.key}" if parsed else "/ui/segments", status_code=303)


async def _store_segment(
    request: Request, services: Services, session: Session, segment: Segment, expected: int, reason: str
) -> list[dict[str, str]]:
    meta = command_meta(request, session.principal.name, None, None)
    service = segment_service(services)
    try:
        if expected == 0:
            await service.create(segment, meta, reason=reason or None)
        else:
            await service.update(segment.key, segment, meta, reason=reason or None, expected_version=expected)
    except DomainError as e:
        return list(e.details) or [{"path": "key", "message": str(e)}]
    return []


@router.get("/keys", response_class=HTMLResponse)
async def keys(request: Request, services: Services, session: ViewKeys) -> HTMLResponse:
    created = await sessions_of(request).take_flash(session, _NEW_KEY)  # shown once: a reload has none
    return render(
        request,
        "keys.html",
        session,
        keys=await key_service(services).list(),
        created=created,
        roles=[r.value for r in Role],
    )


@router.post("/keys", response_class=HTMLResponse)
async def create_key(
    request: Request,
    services: Services,
    session: ChangeKeys,
    principal: Annotated[str, Form(min_length=1, max_length=256, pattern=r"\S")],
    role: Annotated[Role, Form()],
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> RedirectResponse:
    created = await key_service(services).create(
        principal.strip(), role, actor=session.principal.name, reason=reason or None
    )
    await sessions_of(request).put_flash(session, _NEW_KEY, _shown_once(created))
    return RedirectResponse("/ui/keys", status_code=303)


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_key(
    services: Services, session: ChangeKeys, key_id: KeyId, reason: Annotated[str, Form(max_length=1000)] = ""
) -> RedirectResponse:
    await key_service(services).revoke(key_id, actor=session.principal.name, reason=reason or None)
    return RedirectResponse("/ui/keys", status_code=303)


@router.post("/keys/{key_id}/rotate", response_class=HTMLResponse)
async def rotate_key(
    request: Request,
    services: Services,
    session: ChangeKeys,
    key_id: KeyId,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> RedirectResponse:
    created = await key_service(services).rotate(key_id, actor=session.principal.name, reason=reason or None)
    await sessions_of(request).put_flash(session, _NEW_KEY, _shown_once(created))
    return RedirectResponse("/ui/keys", status_code=303)


_NEW_KEY = "new-key"


def _shown_once(created: CreatedKey) -> dict[str, Any]:
    """What the keys page shows of a new key once (from the session, after the redirect)."""
    replaced = created.replaced
    until = None if replaced is None else (replaced.revoked_at or replaced.expires_at)
    return {
        "id": created.key.id,
        "principal": created.key.principal,
        "role": created.key.role.value,
        "secret": created.secret,
        "replaces": None if replaced is None else replaced.id,
        "replaced_expires_at": None if until is None else until.strftime("%Y-%m-%d %H:%M UTC"),
    }
