"""Automatic rollback on the real stack: API -> Postgres -> relay -> Kafka -> rollback worker -> command path.

Each test uses its own flag and its own environment name (alerts without a ``flag`` label look at
every flag changed in their environment), and its own rollback worker (own consumer group).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.alerts import alert_stream
from core.events import EventType
from projections.keys import Keyspace
from tests.integration.platform import Platform, module_database, start_platform
from tests.integration.rollback.support import (
    alertmanager_payload,
    create_opted_in_flag,
    evaluate,
    resolved_of,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


@pytest.fixture
def key() -> str:
    return "rb-" + uuid.uuid4().hex[:10]


@pytest.fixture
def env() -> str:
    return "e" + uuid.uuid4().hex[:8]


async def _post_alert(platform: Platform, payload: dict[str, Any]) -> dict[str, Any]:
    response = await platform.request("POST", "/api/v1/alerts/alertmanager", role="alerts", json=payload)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def _types(platform: Platform, key: str) -> list[str]:
    return [e.type for e in await platform.store.read_stream(key)]


async def _kafka_rolled_back(platform: Platform, key: str) -> list[dict[str, Any]]:
    records = await platform.kafka_events(expected=10**6, within=1.0)
    return [
        json.loads(r["value"])
        for r in records
        if r["key"] == key and json.loads(r["value"])["type"] == EventType.FLAG_ROLLED_BACK.value
    ]


async def test_end_to_end__firing_alert_naming_flag__rolled_back_projected_evaluated_and_incident(
    platform: Platform, key: str, env: str
) -> None:
    delay = 0.5
    bad_version = await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=delay)
    assert await evaluate(platform, key, env) is True
    payload = alertmanager_payload(flag=key, environment=env)

    async with running_worker(platform) as worker:
        posted = await _post_alert(platform, payload)
        accepted = time.monotonic()

        async def flipped_back() -> bool:
            return await evaluate(platform, key, env) is False

        await wait_for(flipped_back, within=delay + 2.0, what="evaluation flipped back")
        elapsed = time.monotonic() - accepted

        events = await platform.store.read_stream(key)
        rollback = events[-1]
        assert rollback.type == EventType.FLAG_ROLLED_BACK.value and rollback.version == bad_version + 1
        assert rollback.causation_id == posted["alerts"][0]["event_id"]
        # The first change of the environment inside the look-back window is v2 (it was configured),
        # so the configuration in force before it (v1: no such environment -> disabled) is restored.
        assert rollback.payload["to_version"] == 1
        assert rollback.payload["undone_versions"] == [2, bad_version]
        assert rollback.payload["alert"]["labels"]["flag"] == key
        assert rollback.payload["config"]["enabled"] is False
        assert elapsed < delay + 2.0

        stored = await platform.redis.hget(Keyspace(platform.settings.redis_namespace).env_flags(env), key)
        document = json.loads(stored)
        assert document["version"] == rollback.version
        assert document["flag"]["environments"][env]["enabled"] is False

        in_kafka = await wait_for(
            lambda: _kafka_rolled_back(platform, key), within=10.0, what="FlagRolledBack in Kafka"
        )
        assert [r["event_id"] for r in in_kafka] == [str(rollback.event_id)]

        incidents = await platform.request("GET", f"/api/v1/incidents?flag={key}", role="reader")
        assert incidents.status_code == 200, incidents.text
        [incident] = incidents.json()["items"]
        body = incident["payload"]
        assert body["alert_event_id"] == posted["alerts"][0]["event_id"] and body["dry_run"] is False
        assert body["flags"][0]["event_id"] == str(rollback.event_id)
        assert body["flags"][0]["undone_versions"] == [2, bad_version]
        assert body["alert_started_at"] <= body["alert_accepted_at"] <= body["rolled_back_at"]

        # A second delivery of the same alert: accepted, nothing appended, nothing changed.
        again = await _post_alert(platform, payload)
        assert again["appended"] == 0 and again["alerts"][0]["duplicate"] is True
        # ... and a redelivery of the alert event to the worker (restart, rebalance) changes nothing.
        [alert_event] = await platform.store.read_stream(alert_stream(payload["alerts"][0]["fingerprint"]))
        redelivered = await worker.worker.handle(alert_event)
        assert [r.outcome for r in redelivered] == ["already_handled"]

        # A resolved alert changes nothing either.
        done_before = worker.consumer.records_done
        resolved = await _post_alert(platform, resolved_of(payload))
        assert resolved["appended"] == 1

        async def resolved_consumed() -> bool:
            return worker.consumer.records_done > done_before

        await wait_for(resolved_consumed, within=10.0, what="resolved alert consumed")
        assert len(await platform.store.read_stream(key)) == rollback.version
        assert len((await platform.request("GET", f"/api/v1/incidents?flag={key}")).json()["items"]) == 1
