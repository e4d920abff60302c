"""Console dependencies: the session behind the cookie, role checks, CSRF on changes, page rendering.

Every console route declares one of the ``Annotated`` aliases below, so its role is visible in its
signature (as the API's routes do with :mod:`api.deps`): ``Public`` (sign-in, static files),
``ViewFlags``/``ViewAudit``/``ViewOps``/``ViewIncidents`` for pages, and ``ChangeFlags``/``ChangeRollback``/
``ChangeOps``/``SignedIn`` for changes, which also check the CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.auth import Permission, authorise, mark_role_check, roles_with
from api.console.csrf import check_csrf
from api.console.session import COOKIE_NAME, Session, SessionStore
from api.errors import ApiError

__all__ = [
    "ChangeFlags",
    "ChangeKeys",
    "ChangeOps",
    "ChangeRollback",
    "Public",
    "SignInRequired",
    "SignedIn",
    "ViewAudit",
    "ViewFlags",
    "ViewIncidents",
    "ViewKeys",
    "ViewOps",
    "ViewWrite",
    "permissions_of",
    "render",
    "sessions_of",
]


class SignInRequired(Exception):
    """No valid session: pages answer with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def sessions_of(request: Request) -> SessionStore:
    """The session store, built on first use from the container's Redis client (after the lifespan)."""
    store = getattr(request.app.state, "console_sessions", None)
    if not isinstance(store, SessionStore):
        container = request.app.state.container
        store = SessionStore(container.redis, container.settings.redis_namespace)
        request.app.state.console_sessions = store
    return store


async def public() -> None:
    """Marks a console route anyone may call (sign-in page, static files)."""


Public = Annotated[None, Depends(public)]


async def _session(request: Request) -> Session:
    session = await sessions_of(request).get(request.cookies.get(COOKIE_NAME))
    if session is None:
        if request.method != "GET":
            raise ApiError(401, "unauthenticated", "sign in to the console first")
        raise SignInRequired(request.url.path)
    request.state.principal = session.principal
    return session


def _view(permission: Permission) -> Callable[..., Coroutine[Any, Any, Session]]:
    async def dependency(session: Annotated[Session, Depends(_session)]) -> Session:
        authorise(session.principal, permission)
        return session

    dependency.__name__ = f"console_view_{permission.value}"
    return mark_role_check(dependency, permission)


def _change(permission: Permission | None) -> Callable[..., Coroutine[Any, Any, Session]]:
    async def dependency(request: Request, session: Annotated[Session, Depends(_session)]) -> Session:
        if permission is not None:
            authorise(session.principal, permission)
        await check_csrf(request, session)
        return session

    dependency.__name__ = f"console_change_{permission.value if permission else 'session'}"
    if permission is None:  # sign-out: any signed-in role
        return mark_role_check(dependency, roles=frozenset().union(*(roles_with(p) for p in Permission)))
    return mark_role_check(dependency, permission)


async def _incident_viewer(session: Annotated[Session, Depends(_session)]) -> Session:
    principal = session.principal
    if not (principal.can(Permission.READ_AUDIT) or principal.can(Permission.OPERATE)):
        raise ApiError(403, "forbidden", f"role {principal.role!r} may not read incidents")
    return session


mark_role_check(_incident_viewer, roles=roles_with(Permission.READ_AUDIT) | roles_with(Permission.OPERATE))

ViewFlags = Annotated[Session, Depends(_view(Permission.READ_FLAGS))]
ViewAudit = Annotated[Session, Depends(_view(Permission.READ_AUDIT))]
ViewOps = Annotated[Session, Depends(_view(Permission.OPERATE))]
ViewWrite = Annotated[Session, Depends(_view(Permission.WRITE_FLAGS))]
ViewKeys = Annotated[Session, Depends(_view(Permission.MANAGE_KEYS))]
ChangeKeys = Annotated[Session, Depends(_change(Permission.MANAGE_KEYS))]
ViewIncidents = Annotated[Session, Depends(_incident_viewer)]
ChangeFlags = Annotated[Session, Depends(_change(Permission.WRITE_FLAGS))]
ChangeRollback = Annotated[Session, Depends(_change(Permission.ROLLBACK))]
ChangeOps = Annotated[Session, Depends(_change(Permission.OPERATE))]
SignedIn = Annotated[Session, Depends(_change(None))]


def permissions_of(session: Session | None) -> dict[str, bool]:
    """What the page may offer: a control a role may not use is not rendered."""
    if session is None:
        return {}
    p = session.principal
    return {
        "read": p.can(Permission.READ_FLAGS),
        "write": p.can(Permission.WRITE_FLAGS),
        "audit": p.can(Permission.READ_AUDIT),
        "rollback": p.can(Permission.ROLLBACK),
        "operate": p.can(Permission.OPERATE),
        "incidents": p.can(Permission.READ_AUDIT) or p.can(Permission.OPERATE),
        "keys": p.can(Permission.MANAGE_KEYS),
    }


def render(
    request: Request, template: str, session: Session | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.console_templates
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "can": permissions_of(session), **context},
        status_code=status_code,
    )
