"""Metric alerts in (Alertmanager webhook v4, or any source) and the incidents of the rollback worker.

Handlers parse, authorise, and hand each alert to :class:`events.rollback.alerts.AlertIngestor`, which
appends it to the event store (stream ``alert:<fingerprint>``); the relay carries it to
``flagstream.metric-alerts``. A malformed payload is a ``422`` whose details name field paths
(``alerts[0].startsAt``). Unknown fields are ignored (Alertmanager adds fields over time);
known fields are checked strictly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from api.auth import Permission, Principal, mark_role_check, roles_with
from api.deps import Alerter, Services, require
from api.errors import ApiError
from core.alerts import (
    FINGERPRINT_PATTERN,
    MetricAlertFiredPayload,
    MetricAlertPayload,
    MetricAlertResolvedPayload,
    fingerprint_of,
)
from core.model import FLAG_KEY_PATTERN
from events.rollback.alerts import AlertIngestor, AlertQueries

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Status = Literal["firing", "resolved"]
Labels = dict[Annotated[str, Field(min_length=1, max_length=256)], Annotated[str, Field(max_length=4096)]]
_ZERO_YEAR = 1  # Alertmanager sends endsAt "0001-01-01T00:00:00Z" for an alert with no end yet


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False, frozen=True)


class AlertmanagerAlert(_Strict):
    """One alert of the webhook (field names are Alertmanager's own, camelCase)."""

    status: Status
    labels: Labels = Field(min_length=1)
    annotations: Labels = Field(default_factory=dict)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: str | None = Field(default=None, max_length=2048)
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)


class AlertmanagerWebhook(_Strict):
    """Alertmanager's webhook payload, version 4."""

    version: Literal["4"]
    status: Status
    receiver: str = Field(default="", max_length=256)
    groupKey: str = Field(default="", max_length=4096)
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)


class GenericAlert(BaseModel):
    """An alert from any other source. Without ``fingerprint``, one is derived from the labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    labels: Labels = Field(min_length=1)
    annotations: Labels = Field(default_factory=dict)
    values: dict[str, JsonValue] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    fingerprint: str | None = Field(default=None, pattern=FINGERPRINT_PATTERN)
    source: str = Field(default="generic", min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")


class GenericAlerts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alerts: list[GenericAlert] = Field(min_length=1, max_length=1000)


def _payload(status: Status, **fields: Any) -> MetricAlertPayload:
    model = MetricAlertFiredPayload if status == "firing" else MetricAlertResolvedPayload
    return model(**fields)


def _from_alertmanager(alert: AlertmanagerAlert) -> MetricAlertPayload:
    ends_at = alert.endsAt if alert.endsAt is not None and alert.endsAt.year > _ZERO_YEAR else None
    return _payload(
        alert.status,
        fingerprint=alert.fingerprint,
        source="alertmanager",
        labels=alert.labels,
        annotations=alert.annotations,
        starts_at=alert.startsAt,
        ends_at=ends_at,
        generator_url=alert.generatorURL or None,
    )


def _from_generic(alert: GenericAlert) -> MetricAlertPayload:
    return _payload(
        alert.status,
        fingerprint=alert.fingerprint or fingerprint_of(alert.labels),
        source=alert.source,
        labels=alert.labels,
        annotations=alert.annotations,
        values=alert.values,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
    )


async def _ingest(
    request: Request, services: Services, principal: Principal, alerts: list[MetricAlertPayload]
) -> JSONResponse:
    ingestor = AlertIngestor(services.store, clock=lambda: datetime.now(UTC), new_id=uuid.uuid4)
    results = [
        await ingestor.ingest(alert, actor=principal.name, correlation_id=request.state.request_id)
        for alert in alerts
    ]
    body = {
        "accepted": len(results),
        "appended": sum(not r.duplicate for r in results),
        "alerts": [r.to_dict() for r in results],
    }
    return JSONResponse(status_code=202, content=body)


@router.post("/alerts/alertmanager", status_code=202, summary="Alertmanager webhook (payload version 4)")
async def alertmanager_webhook(
    request: Request, services: Services, principal: Alerter, body: AlertmanagerWebhook
) -> JSONResponse:
    return await _ingest(request, services, principal, [_from_alertmanager(a) for a in body.alerts])


@router.post("/metric-alerts", status_code=202, summary="Metric alerts from any source")
async def generic_alerts(
    request: Request, services: Services, principal: Alerter, body: GenericAlerts
) -> JSONResponse:
    return await _ingest(request, services, principal, [_from_generic(a) for a in body.alerts])


async def _incident_reader(
    audit: Annotated[Principal, Depends(require(Permission.READ_FLAGS))],
) -> Principal:
    """Readers, operators and admins (any role that may read audit data or operate)."""
    if not (audit.can(Permission.READ_AUDIT) or audit.can(Permission.OPERATE)):
        raise ApiError(403, "forbidden", f"role {audit.role!r} may not read incidents")
    return audit


mark_role_check(_incident_reader, roles=roles_with(Permission.READ_AUDIT) | roles_with(Permission.OPERATE))
IncidentReader = Annotated[Principal, Depends(_incident_reader)]


class IncidentList(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int | None = None


@router.get("/incidents", response_model=IncidentList, summary="Incidents recorded by automatic rollbacks")
async def list_incidents(
    services: Services,
    principal: IncidentReader,
    flag: Annotated[str | None, Query(pattern=FLAG_KEY_PATTERN)] = None,
    cursor: Annotated[int | None, Query(ge=1, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> IncidentList:
    page = await AlertQueries(services.pool).incidents(limit=limit, before=cursor, flag=flag)
    return IncidentList(items=page.items, next_cursor=page.next_cursor)
