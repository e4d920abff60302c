"""Sign in with an API key (a server-side session behind an HttpOnly, SameSite=Strict cookie), sign out,
and the console's static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from api.console.deps import Public, SignedIn, ViewFlags, render, sessions_of
from api.console.session import COOKIE_NAME
from api.deps import Services
from api.errors import ApiError

__all__ = ["router"]

log = structlog.get_logger("api.console")
router = APIRouter()

_STATIC = (Path(__file__).parent.parent / "static").resolve()
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _safe_next(value: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/flags"


@router.get("/static/{path:path}")
async def static_file(path: str, _: Public) -> Response:
    target = (_STATIC / path).resolve()
    if not target.is_relative_to(_STATIC) or not target.is_file() or target.suffix not in _TYPES:
        raise ApiError(404, "not_found", "no such console file")
    return FileResponse(target, media_type=_TYPES[target.suffix], headers={"Cache-Control": "max-age=300"})


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(_: ViewFlags) -> RedirectResponse:
    return RedirectResponse("/ui/flags", status_code=303)


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_page(request: Request, _: Public, next: str | None = None) -> HTMLResponse:
    return render(request, "signin.html", None, next=_safe_next(next), error=None)


@router.post("/signin", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    services: Services,
    _: Public,
    api_key: Annotated[str, Form(max_length=300)] = "",
    next: Annotated[str, Form(max_length=500)] = "/ui/flags",
) -> Response:
    try:
        principal = await services.auth.authenticate(f"Bearer {api_key.strip()}")
    except ApiError as e:
        if e.status != 401:
            raise
        return render(
            request,
            "signin.html",
            None,
            status_code=401,
            next=_safe_next(next),
            error="That API key is not valid (unknown, revoked or mistyped).",
        )
    session = await sessions_of(request).create(principal)
    log.info("console.signed_in", principal=principal.name, role=principal.role)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        session.id,
        httponly=True,
        samesite="strict",
        path="/ui",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/signout")
async def sign_out(request: Request, session: SignedIn) -> RedirectResponse:
    await sessions_of(request).delete(session.id)
    log.info("console.signed_out", principal=session.principal.name)
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/ui")
    return response
