"""The HTTP API on the real stack: auth, commands, reads, evaluation, errors, idempotency, end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.envelope import Event, verify_chain
from core.model import EnvironmentConfig
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

CONFIG: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["user-1"]}],
    "rules": [
        {
            "id": "north-america",
            "when": {
                "all": [
                    {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                    {"not": {"attribute": "email", "op": "ends_with", "values": ["@test.com"]}},
                ]
            },
            "serve": {"variation": "on"},
        }
    ],
    "default": {"variation": "off"},
}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    """One platform per module (a start costs a consumer-group join); each test has its own flags."""
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A flag key of this test's own."""
    return "t-" + uuid.uuid4().hex[:12]


async def _create(platform: Platform, key: str) -> None:
    response = await platform.request("POST", "/api/v1/flags", json={"key": key, "name": key})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer null",
        "Bearer undefined",
        "Basic abc",
        "Bearer fs_short",
        "Bearer not-a-key-at-all-xxxxxxxxxxxx",
    ],
)
async def test_auth__missing_or_malformed_credentials__401(platform: Platform, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}

    response = await platform.client.get("/api/v1/flags", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_auth__revoked_key__401(platform: Platform, key: str) -> None:
    from events.store.keys import ApiKeyStore

    pool = platform.store._pool
    keys = ApiKeyStore(pool)
    key_id, secret = await keys.create("temp", "reader")
    assert (
        await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 200

    await keys.revoke(key_id)
    platform.container.auth.forget()
    response = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("reader", "POST", "/api/v1/flags"),
        ("alerts", "GET", "/api/v1/flags"),
        ("ops", "POST", "/api/v1/flags"),
    ],
)
async def test_auth__wrong_role__403(platform: Platform, role: str, method: str, path: str) -> None:
    response = await platform.request(method, path, role=role, json={"key": "x"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_commands__create_configure_enable__versions_and_actor_from_key(
    platform: Platform, key: str
) -> None:
    await _create(platform, key)
    put = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/production",
        role="writer",
        json={**CONFIG, "enabled": False, "reason": "initial rules"},
        headers={"X-Request-ID": "req-abc"},
    )
    enable = await platform.request(
        "POST",
        f"/api/v1/flags/{key}/environments/production/enable?wait=projected",
        role="writer",
        json={"reason": "go"},
    )

    assert put.status_code == 200 and put.json()["version"] == 2
    assert put.headers["x-request-id"] == "req-abc"
    assert enable.status_code == 200 and enable.json()["version"] == 3 and enable.json()["projected"] is True
    events = await platform.store.read_stream(key)
    assert [e.actor for e in events] == ["test-admin", "test-writer", "test-writer"]
    assert events[1].correlation_id == "req-abc" and events[1].reason == "initial rules"


async def test_reads__flag_from_read_model_with_etag(platform: Platform, key: str) -> None:
    await _create(platform, key)
    await platform.request("PUT", f"/api/v1/flags/{key}/environments/production?wait=projected", json=CONFIG)

    one = await platform.request("GET", f"/api/v1/flags/{key}", role="reader")
    listing = await platform.request("GET", "/api/v1/flags", role="reader")

    assert one.status_code == 200 and one.json()["version"] == 2 and one.headers["etag"] == '"2"'
    assert one.json()["flag"]["environments"]["production"]["rules"][0]["id"] == "north-america"
    assert key in [item["key"] for item in listing.json()["items"]]


async def test_evaluate__targets_rules_default__from_reader(platform: Platform, key: str) -> None:
    await _create(platform, key)
    await platform.request("PUT", f"/api/v1/flags/{key}/environments/production?wait=projected", json=CONFIG)

    async def evaluate(context: dict[str, Any]) -> dict[str, Any]:
        response = await platform.request(
            "POST", "/api/v1/evaluate", role="reader", json={"environment": "production", "context": context}
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["results"][key])

    targeted = await evaluate({"targetingKey": "user-1"})
    ruled = await evaluate({"targetingKey": "user-2", "country": "US", "email": "a@b.com"})
    fallthrough = await evaluate({"targetingKey": "user-3", "country": "FR"})

    assert (targeted["value"], targeted["reason"]) == (True, "TARGETING_MATCH")
    assert (ruled["value"], ruled["rule_id"], ruled["version"]) == (True, "north-america", 2)
    assert (fallthrough["value"], fallthrough["reason"]) == (False, "DEFAULT")


async def test_commands__two_writers_same_expected_version__one_wins_other_409(
    platform: Platform, key: str
) -> None:
    await _create(platform, key)

    responses = await asyncio.gather(
        *(
            platform.request(
                "PATCH", f"/api/v1/flags/{key}", json={"name": f"n{i}"}, headers={"If-Match": '"1"'}
            )
            for i in range(2)
        )
    )

    assert sorted(r.status_code for r in responses) == [200, 409]
    conflict = next(r for r in responses if r.status_code == 409).json()["error"]
    assert conflict["code"] == "version_conflict" and conflict["current_version"] == 2


async def test_idempotency__same_key_same_body__first_response_and_one_event(
    platform: Platform, key: str
) -> None:
    headers = {"Idempotency-Key": f"create-{key}"}
    first = await platform.request("POST", "/api/v1/flags", json={"key": key}, headers=headers)
    again = await platform.request("POST", "/api/v1/flags", json={"key": key}, headers=headers)
    other = await platform.request("POST", "/api/v1/flags", json={"key": key + "-other"}, headers=headers)

    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert await platform.store.current_version(key) == 1
    assert await platform.store.current_version(key + "-other") == 0


async def test_validation__bad_regex_and_unknown_variation__422_with_paths(
    platform: Platform, key: str
) -> None:
    await _create(platform, key)
    bad = {
        **CONFIG,
        "rules": [
            {
                "id": "r",
                "when": {"attribute": "email", "op": "matches", "values": ["(("]},
                "serve": {"variation": "on"},
            }
        ],
        "default": {"variation": "maybe"},
    }

    regex = await platform.request("PUT", f"/api/v1/flags/{key}/environments/production", json=bad)
    variation = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/production",
        json={**CONFIG, "default": {"variation": "maybe"}},
    )

    assert regex.status_code == 422 and regex.json()["error"]["details"][0]["path"].startswith(
        "rules[0].when"
    )
    assert variation.status_code == 422
    assert variation.json()["error"]["code"] == "invalid_configuration"
    assert any(d["path"] == "default.variation" for d in variation.json()["error"]["details"])
    assert await platform.store.current_version(key) == 1


async def test_errors__body_over_limit__413_and_unknown_flag__404(platform: Platform, key: str) -> None:
    huge = {"key": "big", "description": "x" * 2_000_000}

    too_large = await platform.request("POST", "/api/v1/flags", json=huge)
    missing = await platform.request("POST", "/api/v1/flags/ghost/environments/production/enable")
    bad_key = await platform.request("GET", "/api/v1/flags/NOT_A_KEY", role="reader")

    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "flag_not_found"
    assert bad_key.status_code == 422 and bad_key.json()["error"]["details"][0]["path"] == "key"


async def test_health__ready_when_everything_caught_up(platform: Platform, key: str) -> None:
    live = await platform.client.get("/healthz")
    await _create(platform, key)
    put = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/production?wait=projected", json=CONFIG
    )
    assert put.json()["projected"] is True

    ready = await platform.client.get("/readyz", headers=platform.auth("ops"))
    metrics = await platform.client.get("/metrics")

    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["projection"] == "ok"
    assert "flagstream_http_requests_total{" in metrics.text and 'route="/api/v1/flags"' in metrics.text


async def test_end_to_end__100_changes_from_10_clients__read_model_kafka_postgres_agree(
    platform: Platform, key: str
) -> None:
    """Given one flag, when 10 clients change it 100 times at once, every store agrees on every version."""
    await _create(platform, key)

    async def client(n: int) -> None:
        for i in range(10):
            weight = (n * 10 + i) % 101
            response = await platform.request(
                "PUT",
                f"/api/v1/flags/{key}/environments/production",
                role="writer",
                json={
                    **CONFIG,
                    "default": {
                        "rollout": [
                            {"variation": "on", "weight": weight},
                            {"variation": "off", "weight": 100 - weight},
                        ]
                    },
                },
            )
            assert response.status_code == 200, response.text

    await asyncio.gather(*(client(n) for n in range(10)))
    final = await platform.request(
        "POST", f"/api/v1/flags/{key}/environments/production/disable?wait=projected"
    )
    assert final.status_code == 200 and final.json()["projected"] is True

    postgres = await platform.store.read_stream(key)
    everything = [
        Event.from_json(r["value"]) for r in await platform.kafka_events(await platform.store.count())
    ]
    kafka = [e for e in everything if e.flag_key == key]
    flag = (await platform.request("GET", f"/api/v1/flags/{key}", role="reader")).json()
    evaluation = await platform.request(
        "POST",
        "/api/v1/evaluate",
        role="reader",
        json={"environment": "production", "context": {"targetingKey": "user-1"}},
    )

    assert [e.version for e in postgres] == list(range(1, 103))
    assert verify_chain(postgres) is None
    first_seen: dict[int, Event] = {}
    for event in kafka:
        first_seen.setdefault(event.version, event)
    assert sorted(first_seen) == list(range(1, 103))
    assert [e.version for e in kafka] == sorted(e.version for e in kafka)  # per-flag order, no reordering
    assert all(first_seen[e.version].hash == e.hash for e in postgres)
    assert flag["version"] == 102
    assert EnvironmentConfig.model_validate(flag["flag"]["environments"]["production"]) == (
        EnvironmentConfig.model_validate(postgres[-1].payload["config"])
    )
    assert evaluation.json()["results"][key]["version"] == 102


@pytest.mark.parametrize(
    ("method", "suffix", "body", "path"),
    [
        ("POST", "", {"reason": 5}, "reason"),
        ("PUT", "/environments/production", {**CONFIG, "expected_version": "two"}, "expected_version"),
        ("PUT", "/environments/production", {**CONFIG, "reason": ["a"]}, "reason"),
    ],
)
async def test_validation__command_fields_of_wrong_type__422_with_path_nothing_written(
    platform: Platform, key: str, method: str, suffix: str, body: dict[str, Any], path: str
) -> None:
    if suffix:
        await _create(platform, key)
    before = await platform.store.current_version(key)

    response = await platform.request(
        method,
        f"/api/v1/flags{'/' + key if suffix else ''}{suffix}",
        json={"key": key, **body} if not suffix else body,
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == path
    assert await platform.store.current_version(key) == before
