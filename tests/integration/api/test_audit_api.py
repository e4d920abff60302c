"""Audit over HTTP: history with diffs, search across flags, as-of reconstruction from the Kafka log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


def _config(weight: int, *, countries: tuple[str, ...] = ("US",)) -> dict[str, Any]:
    return {
        "enabled": True,
        "off_variation": "off",
        "rules": [
            {
                "id": "geo",
                "when": {"attribute": "country", "op": "in", "values": list(countries)},
                "serve": {
                    "rollout": [
                        {"variation": "on", "weight": weight},
                        {"variation": "off", "weight": 100 - weight},
                    ]
                },
            }
        ],
        "default": {"variation": "off"},
    }


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


async def _instant_after(platform: Platform, key: str) -> datetime:
    """The instant one microsecond after the flag's latest event (before any later change)."""
    latest = (await platform.store.read_stream(key))[-1]
    return latest.occurred_at + timedelta(microseconds=1)


async def test_history__create_rules_rollout_rollback__diffs_actor_reason(platform: Platform) -> None:
    key = "h-" + uuid.uuid4().hex[:10]
    assert (
        await platform.request("POST", "/api/v1/flags", json={"key": key, "reason": "new"})
    ).status_code == 201
    await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/production",
        role="writer",
        json={**_config(10), "reason": "rules"},
    )
    await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/production",
        role="writer",
        json={**_config(60), "reason": "ramp"},
    )
    rollback = await platform.request(
        "POST",
        f"/api/v1/flags/{key}/environments/production/rollback",
        role="ops",
        json={"to_version": 2, "reason": "too fast"},
    )
    assert rollback.status_code == 200, rollback.text

    page = (await platform.request("GET", f"/api/v1/flags/{key}/history", role="reader")).json()

    entries = page["entries"]
    assert [e["type"] for e in entries] == [
        "FlagCreated",
        "EnvironmentConfigured",
        "EnvironmentConfigured",
        "FlagRolledBack",
    ]
    assert [e["actor"] for e in entries] == ["test-admin", "test-writer", "test-writer", "test-ops"]
    assert entries[3]["reason"] == "too fast"
    ramp = {c["path"]: (c["before"], c["after"]) for c in entries[2]["diff"]}
    assert ramp["rules[0].serve.rollout[0].weight"] == (10, 60)
    back = {c["path"]: (c["before"], c["after"]) for c in entries[3]["diff"]}
    assert back["rules[0].serve.rollout[0].weight"] == (60, 10)


async def test_history__pagination_and_filters(platform: Platform) -> None:
    key = "p-" + uuid.uuid4().hex[:10]
    await platform.request("POST", "/api/v1/flags", json={"key": key})
    for weight in (1, 2, 3):
        await platform.request(
            "PUT", f"/api/v1/flags/{key}/environments/production", role="writer", json=_config(weight)
        )

    first = (await platform.request("GET", f"/api/v1/flags/{key}/history?limit=2", role="reader")).json()
    rest = (
        await platform.request("GET", f"/api/v1/flags/{key}/history?after_version=2", role="reader")
    ).json()
    by_actor = (
        await platform.request("GET", f"/api/v1/audit/events?actor=test-writer&flag={key}", role="reader")
    ).json()

    assert [e["version"] for e in first["entries"]] == [1, 2] and first["next_cursor"] is not None
    assert [e["version"] for e in rest["entries"]] == [3, 4]
    assert [e["version"] for e in by_actor["entries"]] == [2, 3, 4]


async def test_audit__writer_may_not_read_the_audit_log(platform: Platform) -> None:
    response = await platform.request("GET", "/api/v1/audit/events", role="writer")

    assert response.status_code == 403


async def test_as_of__flag_and_evaluation_at_three_instants(platform: Platform) -> None:
    """Given a flag changed twice, the state and an evaluation as of each instant are those of that time."""
    key = "a-" + uuid.uuid4().hex[:10]
    await platform.request("POST", "/api/v1/flags", json={"key": key})
    t1 = await _instant_after(platform, key)
    await platform.request("PUT", f"/api/v1/flags/{key}/environments/production", json=_config(100))
    t2 = await _instant_after(platform, key)
    await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/production?wait=projected",
        json=_config(100, countries=("FR",)),
    )
    t3 = await _instant_after(platform, key)

    async def flag_at(instant: datetime) -> dict[str, Any]:
        response = await platform.request(
            "GET", f"/api/v1/flags/{key}", params={"as_of": instant.isoformat()}, role="reader"
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def us_user_at(instant: datetime) -> dict[str, Any]:
        response = await platform.request(
            "POST",
            "/api/v1/evaluate",
            params={"as_of": instant.isoformat()},
            role="reader",
            json={
                "environment": "production",
                "context": {"targetingKey": "u1", "country": "US"},
                "flags": [key],
            },
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["results"][key])

    states = [await flag_at(t) for t in (t1, t2, t3)]
    results = [await us_user_at(t) for t in (t1, t2, t3)]

    assert [s["version"] for s in states] == [1, 2, 3]
    assert "production" not in states[0]["flag"]["environments"]
    assert states[2]["flag"]["environments"]["production"]["rules"][0]["when"]["values"] == ["FR"]
    assert [r["value"] for r in results] == [None, True, False]
    assert results[1]["reason"] == "SPLIT" and results[2]["reason"] == "DEFAULT"


async def test_as_of__before_the_flag_existed__404(platform: Platform) -> None:
    before = datetime(2020, 1, 1, tzinfo=UTC).isoformat()

    response = await platform.request(
        "GET", f"/api/v1/flags/never-{uuid.uuid4().hex[:6]}", params={"as_of": before}, role="reader"
    )
    naive = await platform.request("GET", "/api/v1/flags/x?as_of=2026-01-01T00:00:00", role="reader")

    assert response.status_code == 404
    assert naive.status_code == 422 and naive.json()["error"]["details"][0]["path"] == "as_of"
