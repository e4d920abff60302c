"""/readyz: the status for anyone, details only for an ops key; /metrics: a key when one is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

METRICS_KEY = "metrics-scrape-secret-1234"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(
            database, redis_url, kafka_bootstrap, run_workers=False, metrics_api_key=METRICS_KEY
        ) as p,
    ):
        yield p


async def test_readyz__anonymous_and_non_ops_keys__status_only(platform: Platform) -> None:
    anonymous = await platform.client.get("/readyz")
    reader = await platform.client.get("/readyz", headers=platform.auth("reader"))

    for response in (anonymous, reader):
        assert response.json().keys() == {"status"}, response.text
        assert response.json()["status"] in ("ready", "degraded", "not_ready")


async def test_readyz__ops_key__checks_and_failing_lists(platform: Platform) -> None:
    ops = await platform.client.get("/readyz", headers=platform.auth("ops"))
    anonymous = await platform.client.get("/readyz")

    assert {"status", "checks", "not_ready", "degraded"} <= ops.json().keys()
    assert ops.json()["checks"]["postgres"] == "ok"
    assert ops.status_code == anonymous.status_code
    assert ops.json()["status"] == anonymous.json()["status"]


async def test_readyz__bad_key__401(platform: Platform) -> None:
    response = await platform.client.get("/readyz", headers={"Authorization": "Bearer fs_" + "x" * 30})

    assert response.status_code == 401


async def test_metrics__key_configured__required(platform: Platform) -> None:
    missing = await platform.client.get("/metrics")
    wrong = await platform.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = await platform.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})

    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    assert wrong.status_code == 401
    assert right.status_code == 200 and "flagstream_http_requests_total" in right.text
