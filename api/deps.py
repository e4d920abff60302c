"""FastAPI dependencies: the service container, the authenticated principal, role checks.

Handlers declare what they need with the ``Annotated`` aliases below (``Services``,
``Writer``, ``Reader``...), so authorisation is visible in each route's signature.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from api.auth import Permission, Principal, authorise, mark_role_check
from api.container import Container

__all__ = [
    "Alerter",
    "Auditor",
    "Evaluator",
    "FlagReader",
    "IdempotencyKey",
    "IfMatch",
    "KeyAdmin",
    "Operator",
    "Rollbacker",
    "Services",
    "Writer",
    "require",
]


async def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


Services = Annotated[Container, Depends(_container)]


async def _principal(request: Request, services: Services) -> Principal:
    identified = getattr(request.state, "identified", None)  # the rate limiter's look at the same key
    principal = await services.auth.authenticate(request.headers.get("authorization"), identified=identified)
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        authorise(principal, permission)
        return principal

    dependency.__name__ = f"require_{permission.value}"
    return mark_role_check(dependency, permission)


Writer = Annotated[Principal, Depends(require(Permission.WRITE_FLAGS))]
FlagReader = Annotated[Principal, Depends(require(Permission.READ_FLAGS))]
Evaluator = Annotated[Principal, Depends(require(Permission.EVALUATE))]
Auditor = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
Operator = Annotated[Principal, Depends(require(Permission.OPERATE))]
Alerter = Annotated[Principal, Depends(require(Permission.INGEST_ALERTS))]
Rollbacker = Annotated[Principal, Depends(require(Permission.ROLLBACK))]
KeyAdmin = Annotated[Principal, Depends(require(Permission.MANAGE_KEYS))]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=256,
        description="Same key and body within 24 h returns the first response; no second event.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='Expected flag version, e.g. "7" (as returned in ETag).'),
]
