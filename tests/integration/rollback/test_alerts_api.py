"""The alert endpoints and the incidents list: validation, authorisation, idempotency, pagination."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.alerts import IncidentFlag, MetricAlertFiredPayload, alert_stream
from core.envelope import GENESIS_HASH, seal
from core.events import EventType, to_draft
from events.kafka.adapter import KafkaPublisher, make_consumer, make_producer
from events.relay.relay import Relay
from events.rollback.incidents import IncidentRecorder
from tests.integration.platform import Platform, module_database, start_platform
from tests.integration.rollback.support import alertmanager_payload

pytestmark = pytest.mark.integration

AM = "/api/v1/alerts/alertmanager"
GENERIC = "/api/v1/metric-alerts"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        yield p


def _paths(response: Any) -> set[str]:
    return {d["path"] for d in response.json()["error"]["details"]}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p["alerts"][0].update(status="maybe"), "alerts[0].status"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(startsAt="2026-11-01T12:00:00"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(fingerprint="bad fingerprint!"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(labels={"flag": 7}), "alerts[0].labels.flag"),
    ],
)
async def test_alertmanager__malformed_payload__422_naming_the_field(
    platform: Platform, change: Any, path: str
) -> None:
    payload = alertmanager_payload(flag="checkout", environment="prod")
    change(payload)

    response = await platform.request("POST", AM, role="alerts", json=payload)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert path in _paths(response)


@pytest.mark.parametrize(
    ("role", "status"), [("reader", 403), ("writer", 403), ("alerts", 202), ("admin", 202)]
)
async def test_alert_endpoints__role_alerts_or_admin_only(platform: Platform, role: str, status: int) -> None:
    am = await platform.request("POST", AM, role=role, json=alertmanager_payload(environment="prod"))
    generic = await platform.request(
        "POST",
        GENERIC,
        role=role,
        json={
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "x", "environment": "prod"},
                    "starts_at": datetime.now(UTC).isoformat(),
                }
            ]
        },
    )

    assert (am.status_code, generic.status_code) == (status, status)


async def test_alert_endpoints__no_credentials__401(platform: Platform) -> None:
    response = await platform.client.post(AM, json=alertmanager_payload())

    assert response.status_code == 401


async def test_alertmanager__one_event_per_alert_episode_in_its_stream(platform: Platform) -> None:
    payload = alertmanager_payload(flag="checkout", environment="prod")
    fingerprint = payload["alerts"][0]["fingerprint"]

    first = (await platform.request("POST", AM, role="alerts", json=payload)).json()
    second = (await platform.request("POST", AM, role="alerts", json=payload)).json()

    assert (first["appended"], second["appended"]) == (1, 0)
    assert first["alerts"][0]["event_id"] == second["alerts"][0]["event_id"]
    [event] = await platform.store.read_stream(alert_stream(fingerprint))
    assert event.type == EventType.METRIC_ALERT_FIRED.value and event.actor == "test-alerts"
    assert event.environment == "prod"
    assert event.payload["labels"] == payload["alerts"][0]["labels"]
    assert event.payload["ends_at"] is None and event.payload["source"] == "alertmanager"


async def test_generic__fingerprint_derived_from_labels_and_values_kept(platform: Platform) -> None:
    labels = {"alertname": "LatencyHigh", "environment": "prod", "flag": "f-" + uuid.uuid4().hex[:8]}
    body = {
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "values": {"p99_seconds": 2.5},
                "starts_at": "2026-11-22T03:00:00Z",
                "source": "grafana",
            }
        ]
    }

    response = await platform.request("POST", GENERIC, role="alerts", json=body)
    resolved = await platform.request(
        "POST",
        GENERIC,
        role="alerts",
        json={"alerts": [{**body["alerts"][0], "status": "resolved", "ends_at": "2026-11-22T03:05:00Z"}]},
    )

    assert response.status_code == 202 and resolved.status_code == 202, response.text
    fingerprint = response.json()["alerts"][0]["fingerprint"]
    assert resolved.json()["alerts"][0]["fingerprint"] == fingerprint
    events = await platform.store.read_stream(alert_stream(fingerprint))
    assert [e.type for e in events] == ["MetricAlertFired", "MetricAlertResolved"]
    assert events[0].payload["values"] == {"p99_seconds": 2.5} and events[0].payload["source"] == "grafana"


async def test_generic__unknown_field__422(platform: Platform) -> None:
    response = await platform.request(
        "POST",
        GENERIC,
        role="alerts",
        json={
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"a": "b"},
                    "starts_at": "2026-11-22T03:00:00Z",
                    "severity": "x",
                }
            ]
        },
    )

    assert response.status_code == 422 and "alerts[0].severity" in _paths(response)


async def _record_incidents(platform: Platform, flag: str, count: int) -> None:
    recorder = IncidentRecorder(
        platform.store, actor="rollback-worker", clock=lambda: datetime.now(UTC), new_id=uuid.uuid4
    )
    for _ in range(count):
        alert = MetricAlertFiredPayload(
            fingerprint=uuid.uuid4().hex[:16],
            source="alertmanager",
            labels={"flag": flag, "environment": "prod"},
            starts_at=datetime.now(UTC),
        )
        event = seal(
            to_draft(alert, environment="prod"),
            event_id=uuid.uuid4(),
            flag_key=alert_stream(alert.fingerprint),
            version=1,
            prev_hash=GENESIS_HASH,
            occurred_at=datetime.now(UTC),
            actor="test-alerts",
        )
        await platform.store.append([event])
        flag_outcome = IncidentFlag(
            flag_key=flag,
            environment="prod",
            outcome="rolled_back",
            decided_version=3,
            to_version=2,
            undone_versions=(3,),
        )
        assert await recorder.record(event, alert, flag_outcome, datetime.now(UTC), dry_run=False)
        assert not await recorder.record(event, alert, flag_outcome, datetime.now(UTC), dry_run=False)


async def test_incidents__paginated_newest_first_and_filtered_by_flag(platform: Platform) -> None:
    flag = "inc-" + uuid.uuid4().hex[:8]
    await _record_incidents(platform, flag, 3)
    await _record_incidents(platform, "other-" + flag, 1)

    first = (await platform.request("GET", f"/api/v1/incidents?flag={flag}&limit=2", role="reader")).json()
    second = (
        await platform.request(
            "GET", f"/api/v1/incidents?flag={flag}&limit=2&cursor={first['next_cursor']}", role="ops"
        )
    ).json()

    items = first["items"] + second["items"]
    assert len(items) == 3 and second["next_cursor"] is None
    assert all(
        i["type"] == "IncidentRecorded" and i["payload"]["flags"][0]["flag_key"] == flag for i in items
    )
    times = [i["occurred_at"] for i in items]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    ("role", "status"), [("reader", 200), ("ops", 200), ("admin", 200), ("writer", 403), ("alerts", 403)]
)
async def test_incidents__readers_operators_admins(platform: Platform, role: str, status: int) -> None:
    response = await platform.request("GET", "/api/v1/incidents", role=role)

    assert response.status_code == status, response.text


async def test_alert_accepted_while_nothing_publishes__relayed_to_metric_alerts_topic_later(
    platform: Platform,
) -> None:
    """This module's platform runs no relay: the alert waits in the outbox (as when Kafka is down)."""
    payload = alertmanager_payload(flag="late", environment="prod")
    posted = (await platform.request("POST", AM, role="alerts", json=payload)).json()
    event_id = posted["alerts"][0]["event_id"]
    settings = platform.settings
    bootstrap = settings.kafka_bootstrap_servers or ""

    producer = make_producer(bootstrap, linger_ms=0)
    try:
        await producer.start()
        publisher = KafkaPublisher(
            producer,
            settings.flag_events_topic,
            send_timeout=10,
            metric_alerts_topic=settings.metric_alerts_topic,
        )
        await Relay(
            platform.store,
            publisher,
            name="alerts-later-" + uuid.uuid4().hex[:6],
            topic=settings.flag_events_topic,
        ).drain()
    finally:
        await producer.stop()

    alerts = await _topic_values(bootstrap, settings.metric_alerts_topic)
    flag_events = await _topic_values(bootstrap, settings.flag_events_topic)
    assert event_id in {v["event_id"] for v in alerts}
    assert event_id not in {v["event_id"] for v in flag_events}
    assert all(v["flag_key"].startswith("alert:") for v in alerts)


async def _topic_values(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` (read until three polls in a row bring nothing; bounded)."""
    consumer = make_consumer(bootstrap, topic, group_id=None)
    values: list[dict[str, Any]] = []
    try:
        await consumer.start()
        loop = asyncio.get_running_loop()
        deadline, empty = loop.time() + 15, 0
        while empty < 3 and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            values += [json.loads(r.value) for records in batches.values() for r in records]
            empty = 0 if batches else empty + 1
    finally:
        await consumer.stop()
    return values
