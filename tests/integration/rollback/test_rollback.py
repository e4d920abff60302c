"""Automatic rollback on the real stack: API -> Postgres -> relay -> Kafka -> rollback worker -> command path.

Each test uses its own flag and its own environment name (alerts without a ``flag`` label look at
every flag changed in their environment), and its own rollback worker (own consumer group).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.alerts import alert_stream
from core.commands import EnableFlag
from core.events import EventType
from events.commands.service import CommandMeta, CommandService
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
        undone: dict[str, Any] = rollback.payload
        assert undone["to_version"] == 1
        assert undone["undone_versions"] == [2, bad_version]
        assert undone["alert"]["labels"]["flag"] == key
        assert undone["config"]["enabled"] is False
        assert elapsed < delay + 2.0

        stored = await platform.redis.hget(Keyspace(platform.settings.redis_namespace).env_flags(env), key)
        assert stored is not None
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


async def test_no_implicated_flag__nothing_changes(platform: Platform, key: str, env: str) -> None:
    old_enough = await create_opted_in_flag(platform, key, "other-" + env[:8])  # another environment

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(environment=env))
        await _post_alert(platform, alertmanager_payload(flag="no-such-flag-" + env, environment=env))

        async def both_done() -> list[Any] | None:
            done = [r for r in worker.consumer.results if r.environment == env]
            return done if len(done) >= 2 else None

        results = await wait_for(both_done, within=10.0, what="two alerts decided")

    assert {r.outcome for r in results} == {"not_implicated"}
    assert len(await platform.store.read_stream(key)) == old_enough


async def test_opted_out_flag__is_not_rolled_back(platform: Platform, key: str, env: str) -> None:
    version = await create_opted_in_flag(platform, key, env, enabled=False)

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))
        [result] = await worker.wait_result(key)

    assert result.outcome == "opted_out"
    assert len(await platform.store.read_stream(key)) == version
    assert await evaluate(platform, key, env) is True


async def test_person_changes_flag_after_alert__rollback_skipped_and_recorded(
    platform: Platform, key: str, env: str
) -> None:
    await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=1.5)

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))
        fixed = await platform.request(
            "PUT",
            f"/api/v1/flags/{key}/environments/{env}",
            role="writer",
            json={
                "enabled": True,
                "off_variation": "off",
                "default": {"variation": "off"},
                "auto_rollback": {"enabled": True, "confirmation_delay_seconds": 1.5},
            },
        )
        assert fixed.status_code == 200, fixed.text
        [result] = await worker.wait_result(key)

    assert result.outcome == "skipped"
    events = await platform.store.read_stream(key)
    assert [e.type for e in events[-2:]] == [
        EventType.ENVIRONMENT_CONFIGURED.value,
        EventType.ROLLBACK_SKIPPED.value,
    ]
    skipped: dict[str, Any] = events[-1].payload
    assert "test-writer" in str(skipped["why"])
    assert skipped["alert"]["labels"]["flag"] == key
    assert EventType.FLAG_ROLLED_BACK.value not in {e.type for e in events}


async def test_resolved_within_confirmation_delay__cancels(platform: Platform, key: str, env: str) -> None:
    version = await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=1.0)
    payload = alertmanager_payload(flag=key, environment=env)

    async with running_worker(platform) as worker:
        await _post_alert(platform, payload)
        await _post_alert(platform, resolved_of(payload))
        [result] = await worker.wait_result(key)

    assert result.outcome == "cancelled"
    assert len(await platform.store.read_stream(key)) == version


async def test_cooldown__second_alert_within_it__no_second_rollback(
    platform: Platform, key: str, env: str
) -> None:
    await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=0.0, cooldown_seconds=600)

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))
        [first] = await worker.wait_result(key)
        # A person enables it again — through a fresh command service (another API process): this
        # test's API process caches flag states, and a no-op decision on its stale state (it still
        # thinks the flag is enabled) answers "unchanged" without writing (reported to the lead).
        people = CommandService(platform.store, clock=lambda: datetime.now(UTC), new_id=uuid.uuid4)
        again = await people.execute(
            EnableFlag(flag_key=key, environment=env), CommandMeta(actor="test-person")
        )
        assert again.events
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))  # another fingerprint
        second = (await worker.wait_result(key, count=2))[1]

    assert (first.outcome, second.outcome) == ("rolled_back", "cooldown")
    types = await _types(platform, key)
    assert types.count(EventType.FLAG_ROLLED_BACK.value) == 1 and types[-1] == EventType.FLAG_ENABLED.value


async def test_dry_run__records_what_it_would_do_and_changes_nothing(
    platform: Platform, key: str, env: str
) -> None:
    version = await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=0.0, dry_run=True)

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))
        [result] = await worker.wait_result(key)

    assert result.outcome == "dry_run"
    events = await platform.store.read_stream(key)
    assert len(events) == version + 1 and events[-1].type == EventType.ROLLBACK_SKIPPED.value
    assert str(events[-1].payload["why"]).startswith("dry_run: would restore")
    assert await evaluate(platform, key, env) is True
    [incident] = (await platform.request("GET", f"/api/v1/incidents?flag={key}", role="ops")).json()["items"]
    assert incident["payload"]["dry_run"] is True


async def test_two_workers_racing_on_one_alert__exactly_one_rollback(
    platform: Platform, key: str, env: str
) -> None:
    await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=0.2)

    async with running_worker(platform) as first, running_worker(platform) as second:
        await _post_alert(platform, alertmanager_payload(flag=key, environment=env))
        [a] = await first.wait_result(key)
        [b] = await second.wait_result(key)

    assert sorted([a.outcome, b.outcome]) == ["already_handled", "rolled_back"]
    assert (await _types(platform, key)).count(EventType.FLAG_ROLLED_BACK.value) == 1
    incidents = (await platform.request("GET", f"/api/v1/incidents?flag={key}")).json()["items"]
    assert len(incidents) == 1


async def test_lookback__alert_without_flag_label__rolls_back_the_flag_changed_in_its_environment(
    platform: Platform, key: str, env: str
) -> None:
    await create_opted_in_flag(platform, key, env, confirmation_delay_seconds=0.0)

    async with running_worker(platform) as worker:
        await _post_alert(platform, alertmanager_payload(environment=env))
        [result] = await worker.wait_result(key)

    assert result.outcome == "rolled_back"

    async def flipped_back() -> bool:
        return await evaluate(platform, key, env) is False

    await wait_for(flipped_back, within=5.0, what="evaluation flipped back")
