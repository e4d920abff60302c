"""Request bodies are strict about JSON types: ``"enabled": "yes"`` is a 422 naming the field, not true."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        yield p


async def _events(platform: Platform) -> int:
    count: int = await platform.container.pool.fetchval("SELECT count(*) FROM events")
    return count


async def _flag(platform: Platform) -> str:
    key = "s-" + uuid.uuid4().hex[:10]
    created = await platform.request("POST", "/api/v1/flags", json={"key": key, "name": key})
    assert created.status_code == 201, created.text
    return key


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"enabled": "yes", "default": {"variation": "off"}}, "enabled"),
        ({"enabled": 1, "default": {"variation": "off"}}, "enabled"),
        ({"enabled": True, "default": {"variation": "off"}, "expected_version": "1"}, "expected_version"),
    ],
)
async def test_put_environment__string_or_number_for_a_bool_or_int__422_with_field_path(
    platform: Platform, body: dict[str, Any], path: str
) -> None:
    key = await _flag(platform)
    before = await _events(platform)

    response = await platform.request("PUT", f"/api/v1/flags/{key}/environments/production", json=body)

    assert response.status_code == 422, response.text
    assert path in [d["path"] for d in response.json()["error"]["details"]], response.text
    assert await _events(platform) == before


@pytest.mark.parametrize(
    ("method", "suffix", "body", "path"),
    [
        ("POST", "/archive", {"expected_version": "1"}, "expected_version"),
        ("PATCH", "", {"temporary": "yes"}, "temporary"),
        ("POST", "/environments/production/rollback", {"to_version": "1"}, "to_version"),
    ],
)
async def test_command_bodies__lax_types__422_with_field_path(
    platform: Platform, method: str, suffix: str, body: dict[str, Any], path: str
) -> None:
    key = await _flag(platform)
    before = await _events(platform)

    response = await platform.request(method, f"/api/v1/flags/{key}{suffix}", json=body)

    assert response.status_code == 422, response.text
    assert path in [d["path"] for d in response.json()["error"]["details"]], response.text
    assert await _events(platform) == before


async def test_evaluate__flags_not_a_list_of_strings__422(platform: Platform) -> None:
    response = await platform.request(
        "POST", "/api/v1/evaluate", json={"environment": "production", "flags": [1, 2]}
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"].startswith("flags")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"stage": "relay", "limit": "1"}, "limit"),
        ({"stage": "relay", "min_age_seconds": "60"}, "min_age_seconds"),
        ({"stage": "relay", "limit": 1.0}, "limit"),
        ({"flag": 7}, "flag"),
        ({"stage": "relay", "reason": 5}, "reason"),
    ],
)
async def test_dead_letter_redrive_filter__lax_types__422_with_field_path(
    platform: Platform, body: dict[str, Any], path: str
) -> None:
    before = await _events(platform)

    response = await platform.request("POST", "/api/v1/dead-letters/redrive", role="ops", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert path in [d["path"] for d in response.json()["error"]["details"]], response.text
    assert await _events(platform) == before
