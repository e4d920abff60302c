"""Helpers for the rollback tests: a rollback worker in the test's event loop, flags, alerts, polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from core.envelope import Event
from events.commands.service import CommandService
from events.kafka.adapter import make_consumer
from events.rollback.alerts import AlertQueries
from events.rollback.worker import FlagResult, RollbackPolicy, RollbackWorker
from events.store.db import create_pool
from events.store.postgres import PostgresEventStore
from tests.integration.platform import Platform
from workers.rollback import AlertConsumer

__all__ = [
    "RunningWorker",
    "alertmanager_payload",
    "create_opted_in_flag",
    "evaluate",
    "resolved_of",
    "running_worker",
    "wait_for",
]

T = TypeVar("T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def wait_for(probe: Callable[[], Awaitable[T | None]], *, within: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)  # polling a condition, bounded by the deadline


class _AlertsSinceStart(RollbackWorker):
    """Handles only the alerts accepted after it started: the module's earlier alerts stay in the
    topic, and a new consumer group reads from the beginning."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._since = _utc_now()

    async def handle(self, event: Event) -> list[FlagResult]:
        if event.occurred_at < self._since:
            return []
        return await super().handle(event)


@dataclass
class RunningWorker:
    consumer: AlertConsumer
    worker: RollbackWorker

    def results_for(self, flag_key: str) -> list[FlagResult]:
        return [r for r in self.consumer.results if r.flag_key == flag_key]

    async def wait_result(self, flag_key: str, *, within: float = 10.0, count: int = 1) -> list[FlagResult]:
        async def probe() -> list[FlagResult] | None:
            found = self.results_for(flag_key)
            return found if len(found) >= count else None

        return await wait_for(probe, within=within, what=f"{count} worker result(s) for {flag_key}")


@contextlib.asynccontextmanager
async def running_worker(
    platform: Platform, *, dry_run: bool = False, default_delay: float = 0.0
) -> AsyncIterator[RunningWorker]:
    """A rollback worker with its own pool and consumer group on ``settings.metric_alerts_topic``,
    running until the block ends (as a separate worker process would)."""
    settings = platform.settings
    bootstrap = settings.kafka_bootstrap_servers or ""
    pool = await create_pool(settings.database_url or "", min_size=1, max_size=4)
    store = PostgresEventStore(pool)
    policy = RollbackPolicy(
        lookback=timedelta(minutes=30), default_confirmation_seconds=default_delay, dry_run=dry_run
    )
    worker = _AlertsSinceStart(
        store,
        CommandService(store, clock=_utc_now, new_id=uuid.uuid4),
        AlertQueries(pool),
        policy,
        clock=_utc_now,
    )
    consumer = make_consumer(
        bootstrap, settings.metric_alerts_topic, group_id=f"rollback-{uuid.uuid4().hex[:10]}"
    )
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await consumer.start()  # inside the try: a consumer whose start fails is closed all the same
        alerts = AlertConsumer(worker, consumer, poll_ms=50)
        task = asyncio.create_task(alerts.run(stop))
        await wait_for(lambda: _assigned(consumer), within=30.0, what="rollback consumer assigned")
        yield RunningWorker(alerts, worker)
    finally:
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await pool.close()


async def _assigned(consumer: Any) -> bool:
    return bool(consumer.assignment())


def alertmanager_payload(
    status: str = "firing",
    *,
    fingerprint: str | None = None,
    starts_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    started = starts_at or datetime.now(UTC)
    alert = {
        "status": status,
        "labels": {"alertname": "FlagErrorRate", "severity": "page", **labels},
        "annotations": {"summary": "error ratio above 5%"},
        "startsAt": started.isoformat().replace("+00:00", "Z"),
        "endsAt": (started + timedelta(minutes=5)).isoformat()
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint or uuid.uuid4().hex[:16],
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="FlagErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "flagstream",
        "groupLabels": {"alertname": "FlagErrorRate"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def resolved_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The same alerts, resolved now (same fingerprints and startsAt)."""
    ended = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = [{**a, "status": "resolved", "endsAt": ended} for a in payload["alerts"]]
    return {**payload, "status": "resolved", "alerts": alerts}


def environment_config(*, environment_enabled: bool, **auto_rollback: Any) -> dict[str, Any]:
    return {
        "enabled": environment_enabled,
        "off_variation": "off",
        "default": {"variation": "on"},
        "auto_rollback": {"enabled": True, **auto_rollback},
    }


async def create_opted_in_flag(platform: Platform, key: str, environment: str, **auto_rollback: Any) -> int:
    """v1 created; v2 the environment (off, opted in); v3 enabled — the change an alert will blame.

    Returns the flag version after the bad change (3), once the read model shows it.
    """
    created = await platform.request("POST", "/api/v1/flags", json={"key": key, "name": key})
    assert created.status_code == 201, created.text
    put = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/{environment}",
        json=environment_config(environment_enabled=False, **auto_rollback),
    )
    assert put.status_code == 200, put.text
    enabled = await platform.request(
        "POST", f"/api/v1/flags/{key}/environments/{environment}/enable", json={"reason": "launch"}
    )
    assert enabled.status_code == 200, enabled.text

    async def served() -> bool:  # the projector's first group join can take seconds
        return await evaluate(platform, key, environment) is True

    await wait_for(served, within=30.0, what=f"{key} enabled in the read model")
    return int(enabled.json()["version"])


async def evaluate(platform: Platform, key: str, environment: str) -> Any:
    response = await platform.request(
        "POST",
        "/api/v1/evaluate",
        role="reader",
        json={"environment": environment, "context": {"targetingKey": "u-1"}, "flags": [key]},
    )
    if response.status_code in (404, 422) and response.json()["error"]["code"] == "unknown_environment":
        return None  # the environment is not in the read model yet
    assert response.status_code == 200, response.text
    return response.json()["results"][key]["value"]
