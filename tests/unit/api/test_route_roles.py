"""Every route of the live route table has a role dependency or is on the public allow-list."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.deps import Writer
from runtime.settings import load_settings
from tests.unit.api.route_roles import PUBLIC_ROUTES, route_roles, unprotected_routes


def _app() -> FastAPI:
    return create_app(load_settings(log_json=False))


def test_every_route__has_a_role_dependency_or_is_public() -> None:
    missing = unprotected_routes(_app())
    assert not missing, "routes without a role dependency:\n" + "\n".join(missing)


def test_route_table__read_from_the_live_app() -> None:
    roles = {(r.method, r.path): r.roles for r in route_roles(_app())}
    assert roles[("POST", "/api/v1/flags")] == frozenset({"admin", "writer"})
    assert roles[("POST", "/api/v1/evaluate")] == frozenset({"admin", "writer", "reader", "ops", "evaluator"})
    # two checks (read flags; read audit or operate), intersected
    assert roles[("GET", "/api/v1/incidents")] == frozenset({"admin", "reader", "ops"})
    assert ("GET", "/healthz") in roles and ("GET", "/healthz") in PUBLIC_ROUTES


def test_new_route_without_role__reported_by_method_and_path() -> None:
    app = _app()
    before = set(unprotected_routes(app))

    @app.post("/api/v1/forgotten/{thing}")
    async def forgotten(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @app.post("/api/v1/guarded")
    async def guarded(principal: Writer) -> dict[str, str]:
        return {"by": principal.name}

    missing = [line for line in unprotected_routes(app) if line not in before]

    assert len(missing) == 1 and missing[0].startswith("POST /api/v1/forgotten/{thing}: no role dependency")
