"""Metric alerts in: each alert becomes an event of stream ``alert:<fingerprint>`` in the event store.

Same durable path as every command: the event is appended to Postgres (hash-chained, gapless per
stream) and the relay publishes it to ``flagstream.metric-alerts`` — an alert accepted while
Kafka is down waits in the outbox and is not lost.

Idempotent per alert episode: an alert whose ``(status, starts_at)`` is already in its stream
appends nothing (Alertmanager re-sends firing alerts every ``repeat_interval``; a webhook may be
retried). Two concurrent posts of one alert race on the stream's next version; the loser reads
the stream again and finds the winner's event.

Also here: the two reads the rollback side needs from the ``events`` table — the flags changed
since an instant (look-back candidates) and the incidents, newest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import structlog

from core.alerts import (
    INCIDENT_STREAM_PREFIX,
    MetricAlertFiredPayload,
    MetricAlertPayload,
    alert_environment,
    alert_stream,
)
from core.envelope import GENESIS_HASH, Event, seal
from core.events import read_payload, to_draft
from events.errors import StoreUnavailable, VersionConflict
from events.store.db import CONNECTION_ERRORS
from events.store.idempotency import IdempotencyWrite
from monitoring import metrics

__all__ = ["AlertIngestor", "AlertQueries", "AlertStore", "IncidentPage", "IngestedAlert"]

log = structlog.get_logger(__name__)

_MAX_ATTEMPTS = 8


class AlertStore(Protocol):
    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]: ...

    async def append(
        self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestedAlert:
    fingerprint: str
    status: str
    event_id: str
    version: int
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "status": self.status, "event_id": self.event_id,
                "version": self.version, "duplicate": self.duplicate}


class AlertIngestor:
    def __init__(
        self, store: AlertStore, *, clock: Callable[[], datetime], new_id: Callable[[], UUID]
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id

    async def ingest(
        self, alert: MetricAlertPayload, *, actor: str, correlation_id: str | None = None
    ) -> IngestedAlert:
        """Append the alert to its stream unless this episode (status, starts_at) is already there."""
        stream = alert_stream(alert.fingerprint)
        status = "firing" if isinstance(alert, MetricAlertFiredPayload) else "resolved"
        metrics.record_alert_received(alert.source, status)
        for _ in range(_MAX_ATTEMPTS):
            events = await self._store.read_stream(stream)
            existing = _same_episode(events, alert)
            if existing is not None:
                log.info("alert.duplicate", fingerprint=alert.fingerprint, status=status,
                         version=existing.version)
                return IngestedAlert(
                    alert.fingerprint, status, str(existing.event_id), existing.version, duplicate=True
                )
            event = seal(
                to_draft(alert, environment=alert_environment(alert)),
                event_id=self._new_id(),
                flag_key=stream,
                version=len(events) + 1,
                prev_hash=events[-1].hash if events else GENESIS_HASH,
                occurred_at=self._clock(),
                actor=actor,
                reason=alert.annotations.get("summary"),
                correlation_id=correlation_id,
            )
            try:
                await self._store.append([event])
            except VersionConflict:
                continue
            log.info("alert.accepted", fingerprint=alert.fingerprint, status=status, version=event.version,
                     source=alert.source)
            return IngestedAlert(alert.fingerprint, status, str(event.event_id), event.version, False)
        raise StoreUnavailable(f"alert stream {stream!r} kept moving; alert not recorded")


def _same_episode(events: Sequence[Event], alert: MetricAlertPayload) -> Event | None:
    for event in events:
        if event.type != alert.event_type.value:
            continue
        payload = read_payload(event)
        if isinstance(payload, MetricAlertPayload) and payload.starts_at == alert.starts_at:
            return event
    return None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: list[dict[str, Any]]
    next_cursor: int | None


class AlertQueries:
    """Reads of the ``events`` table for the rollback worker and ``GET /api/v1/incidents``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def flags_changed_since(self, since: datetime) -> list[str]:
        """Flag streams (not segments, alerts, incidents...) with an event at or after ``since``."""
        rows = await self._fetch(
            "SELECT DISTINCT flag_key FROM events WHERE occurred_at >= $1 AND position(':' in flag_key) = 0"
            " ORDER BY flag_key",
            since,
        )
        return [r["flag_key"] for r in rows]

    async def incidents(
        self, *, limit: int, before: int | None = None, flag: str | None = None
    ) -> IncidentPage:
        """Incident events, newest first; ``before``: the cursor (a ``seq``) of the previous page."""
        rows = await self._fetch(
            "SELECT seq, body FROM events WHERE flag_key LIKE $1 AND ($2::bigint IS NULL OR seq < $2)"
            " AND ($3::text IS NULL OR body::jsonb -> 'payload' -> 'flags' @> jsonb_build_array("
            "jsonb_build_object('flag_key', $3::text)))"
            " ORDER BY seq DESC LIMIT $4",
            INCIDENT_STREAM_PREFIX + "%", before, flag, limit + 1,
        )
        items = [json.loads(r["body"]) for r in rows[:limit]]
        return IncidentPage(items, rows[limit - 1]["seq"] if len(rows) > limit else None)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(query, *args))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"Postgres unreachable: {e}") from e
