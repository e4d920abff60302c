"""Incidents of the rollback worker: one ``IncidentRecorded`` event per (alert event, flag environment).

The stream is ``incident:<id>`` with ``id`` = a UUID derived from the alert event id, the flag and
the environment, and the event is version 1 of it: recording the same incident twice (a second
worker, a restart) is a version conflict, which means "already recorded".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from core.alerts import (
    IncidentFlag,
    IncidentRecordedPayload,
    MetricAlertFiredPayload,
    alert_info,
    incident_stream,
)
from core.envelope import GENESIS_HASH, Event, seal
from core.errors import VersionConflict
from core.events import EventType, FlagRolledBackPayload, read_payload, to_draft
from events.rollback.alerts import AlertStore
from monitoring import metrics

__all__ = ["IncidentRecorder", "alert_name", "incident_id_for"]

log = structlog.get_logger(__name__)

_INCIDENT_NAMESPACE = uuid.UUID("6f2c3d0e-55b1-4f3e-9a57-1d1f0c7a2b10")


def incident_id_for(alert_event_id: str, flag_key: str, environment: str) -> str:
    return str(uuid.uuid5(_INCIDENT_NAMESPACE, f"{alert_event_id}:{flag_key}:{environment}"))


def alert_name(alert: MetricAlertFiredPayload) -> str:
    return f"{alert.labels.get('alertname', 'alert')} ({alert.fingerprint})"


class IncidentRecorder:
    def __init__(
        self, store: AlertStore, *, actor: str, clock: Callable[[], datetime], new_id: Callable[[], uuid.UUID]
    ) -> None:
        self._store = store
        self._actor = actor
        self._clock = clock
        self._new_id = new_id

    async def record(
        self,
        event: Event,
        alert: MetricAlertFiredPayload,
        flag: IncidentFlag,
        rolled_back_at: datetime,
        *,
        dry_run: bool,
    ) -> bool:
        """Record the incident of ``flag`` for alert ``event``; ``False`` when it was recorded already."""
        incident_id = incident_id_for(str(event.event_id), flag.flag_key, flag.environment)
        payload = IncidentRecordedPayload(
            incident_id=incident_id,
            alert=alert_info(alert),
            alert_event_id=str(event.event_id),
            source=alert.source,
            dry_run=dry_run,
            flags=(flag,),
            alert_started_at=alert.starts_at,
            alert_accepted_at=event.occurred_at,
            rolled_back_at=rolled_back_at,
            seconds_to_rollback=max((rolled_back_at - event.occurred_at).total_seconds(), 0.0),
        )
        incident = seal(
            to_draft(payload, environment=flag.environment),
            event_id=self._new_id(),
            flag_key=incident_stream(incident_id),
            version=1,
            prev_hash=GENESIS_HASH,
            occurred_at=self._clock(),
            actor=self._actor,
            reason=f"automatic rollback: {alert_name(alert)}",
            correlation_id=event.correlation_id or str(event.event_id),
            causation_id=str(event.event_id),
        )
        try:
            await self._store.append([incident])
        except VersionConflict:
            return False
        metrics.record_incident()
        log.info("rollback.incident_recorded", incident_id=incident_id, flag=flag.flag_key, dry_run=dry_run)
        return True

    async def repair(
        self, event: Event, alert: MetricAlertFiredPayload, flag_events: Sequence[Event]
    ) -> None:
        """Record the incidents of rollbacks this alert caused that an earlier run left unrecorded."""
        for flag_event in flag_events:
            if (
                flag_event.causation_id != str(event.event_id)
                or flag_event.type != EventType.FLAG_ROLLED_BACK
            ):
                continue
            payload = read_payload(flag_event)
            assert isinstance(payload, FlagRolledBackPayload)
            flag = IncidentFlag(
                flag_key=flag_event.flag_key,
                environment=str(flag_event.environment),
                outcome="rolled_back",
                decided_version=flag_event.version - 1,
                to_version=payload.to_version,
                undone_versions=payload.undone_versions,
                event_id=str(flag_event.event_id),
                version=flag_event.version,
            )
            await self.record(event, alert, flag, flag_event.occurred_at, dry_run=False)
