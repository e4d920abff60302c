"""Every route of the live route table x every role: allowed (anything but 401/403) or 403 ``forbidden``.

Built from ``app.routes`` and ``api.auth.ROLE_CHECKS`` (tests/unit/api/route_roles.py), so routes added
later are covered without touching this file. Console routes (``/ui``) authenticate with a session
cookie, not a bearer key: the unit test checks they carry a role dependency; this matrix sends keys.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from api.auth import _ROLE_PERMISSIONS
from events.store.keys import ApiKeyStore
from tests.integration.platform import Platform, module_database, start_platform
from tests.unit.api.route_roles import route_roles

pytestmark = pytest.mark.integration

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")
_SAMPLES = {"key": "matrix-flag", "env": "production", "environment": "production"}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        store = ApiKeyStore(p.container.pool)
        for role in _ROLE_PERMISSIONS:
            if role not in p.keys:
                p.keys[role] = (await store.create(f"test-{role}", role))[1]
        yield p


def _concrete(path: str) -> str:
    return _PARAM.sub(lambda m: _SAMPLES.get(m.group(1), "00000000-0000-4000-8000-000000000000"), path)


async def test_every_route_x_every_role__allowed_or_403(platform: Platform) -> None:
    routes = [r for r in route_roles(platform.app) if r.roles is not None and not r.path.startswith("/ui")]
    wrong: list[str] = []
    for route in routes:
        for role in _ROLE_PERMISSIONS:
            response = await platform.request(route.method, _concrete(route.path), role=role)
            allowed = role in (route.roles or ())
            status = response.status_code
            if allowed and status in (401, 403):
                wrong.append(f"{route.method} {route.path} as {role}: {status}, expected allowed")
            if not allowed and (status != 403 or response.json()["error"]["code"] != "forbidden"):
                wrong.append(f"{route.method} {route.path} as {role}: {status}, expected 403 forbidden")

    assert len(routes) >= 30  # the table really was read (flags, evaluate, audit, dead letters, alerts ...)
    assert not wrong, "\n".join(wrong)


async def test_no_key__401_on_every_protected_route(platform: Platform) -> None:
    routes = [r for r in route_roles(platform.app) if r.roles is not None and not r.path.startswith("/ui")]
    answers = {
        f"{r.method} {r.path}": (await platform.client.request(r.method, _concrete(r.path))).status_code
        for r in routes
    }
    assert {k: v for k, v in answers.items() if v != 401} == {}
