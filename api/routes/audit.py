"""Audit reads: a flag's history, search across flags. Every read is itself logged (who looked at what).

History and search are answered from the Postgres ``events`` table, which holds the same canonical
bodies as the Kafka log (``flagstream audit verify`` proves they agree) and is indexed; as-of
reconstruction replays the Kafka log itself (see ``events/audit/asof.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Auditor, Services
from api.errors import ApiError
from core.model import ENVIRONMENT_PATTERN, FLAG_KEY_PATTERN
from events.audit.access import log_audit_access
from events.audit.history import AuditFilters, HistoryPage, PostgresAuditLog

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Types = Annotated[list[str] | None, Query(alias="type", description="Event types (repeatable)")]


def _filters(**fields: object) -> AuditFilters:
    since, until = fields.get("since"), fields.get("until")
    if (isinstance(since, datetime) and since.tzinfo is None) or (
        isinstance(until, datetime) and until.tzinfo is None
    ):
        raise ApiError(
            422,
            "validation_error",
            "since/until need a UTC offset",
            details=[{"path": "since" if since else "until", "message": "no UTC offset"}],
        )
    types = fields.pop("types", None)
    type_names = frozenset(str(t) for t in types) if isinstance(types, list) else frozenset[str]()
    return AuditFilters.model_validate({**fields, "types": type_names})


@router.get(
    "/flags/{key}/history",
    response_model=HistoryPage,
    tags=["flags"],
    summary="A flag's events with field-level diffs, actor, reason, correlation and causation",
)
async def flag_history(
    key: Annotated[str, Path(pattern=FLAG_KEY_PATTERN)],
    services: Services,
    principal: Auditor,
    environment: Annotated[str | None, Query(pattern=ENVIRONMENT_PATTERN)] = None,
    actor: str | None = None,
    types: Types = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_version: Annotated[
        int | None, Query(ge=0, le=2_147_483_647, description="Cursor: the last version seen")
    ] = None,
    limit: Limit = 100,
) -> HistoryPage:
    filters = _filters(environment=environment, actor=actor, types=types, since=since, until=until)
    log_audit_access(principal.name, "flag_history", {"flag": key, **filters.model_dump(mode="json")})
    return await PostgresAuditLog(services.pool).history(
        key, filters, after_version=after_version, limit=limit
    )


@router.get("/audit/events", response_model=HistoryPage, summary="Search the audit log across flags")
async def search(
    services: Services,
    principal: Auditor,
    flag: Annotated[str | None, Query(max_length=200)] = None,
    environment: Annotated[str | None, Query(pattern=ENVIRONMENT_PATTERN)] = None,
    actor: str | None = None,
    types: Types = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Limit = 100,
) -> HistoryPage:
    filters = _filters(
        flag_key=flag, environment=environment, actor=actor, types=types, since=since, until=until
    )
    log_audit_access(principal.name, "audit_search", filters.model_dump(mode="json"))
    try:
        return await PostgresAuditLog(services.pool).search(filters, cursor=cursor, limit=limit)
    except ValueError as e:
        raise ApiError(
            422,
            "validation_error",
            "the cursor is not valid",
            details=[{"path": "cursor", "message": str(e)}],
        ) from e
