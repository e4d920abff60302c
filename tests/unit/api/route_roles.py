"""The permission each route of the live route table requires, read from its dependency tree.

A route is protected when one of its dependencies (at any depth) is registered in
``api.auth.ROLE_CHECKS`` (``api.deps.require`` registers every check it builds). Public routes
are an explicit allow-list, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from api.auth import ROLE_CHECKS

__all__ = ["PUBLIC_ROUTES", "RouteRole", "route_roles", "unprotected_routes"]

PUBLIC_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe: public status; details only for an ops key (checked inside)",
    ("GET", "/metrics"): "Prometheus scrape; a key when FLAGSTREAM_METRICS_API_KEY is set (checked inside)",
    ("GET", "/openapi.json"): "the API's schema",
    ("GET", "/docs"): "Swagger UI",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI",
    ("GET", "/redoc"): "ReDoc",
    ("GET", "/ui/signin"): "console sign-in page",
    ("POST", "/ui/signin"): "console sign-in form (it checks the key itself)",
    ("GET", "/ui/static/{path:path}"): "console static files (CSS, JS)",
}


@dataclass(frozen=True)
class RouteRole:
    method: str
    path: str
    roles: frozenset[str] | None  # the roles let through; None: no role dependency found


def _checks(dependant: Dependant) -> Iterator[frozenset[str]]:
    call = dependant.call
    if call is not None and call in ROLE_CHECKS:
        yield ROLE_CHECKS[call]
    for sub in dependant.dependencies:
        yield from _checks(sub)


def route_roles(app: FastAPI) -> list[RouteRole]:
    """Every (method, path) of the live route table with the roles it lets through (None: no check found)."""
    found: list[RouteRole] = []
    for context in iter_route_contexts(app.routes):
        path = context.path
        if path is None:
            continue
        methods = sorted((context.methods or {"GET"}) - {"HEAD"})
        dependant = getattr(context, "dependant", None)
        checks = list(_checks(dependant)) if isinstance(dependant, Dependant) else []
        roles = frozenset.intersection(*checks) if checks else None
        for method in methods:
            found.append(RouteRole(method, path, roles))
    return found


def unprotected_routes(app: FastAPI) -> list[str]:
    """A line per route with no role dependency that is not on the public allow-list."""
    return [
        f"{r.method} {r.path}: no role dependency (use an api.deps alias such as Writer, or a check "
        f"registered with api.auth.mark_role_check; or list it in PUBLIC_ROUTES with why it is public)"
        for r in route_roles(app)
        if r.roles is None and (r.method, r.path) not in PUBLIC_ROUTES
    ]
