"""Flag metadata on the real stack: set at creation, changed by PATCH (an event), refused with a path,
carried into OFREP answers; and a flag created with explicit variations (reported as a 422)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

ENV = "production"
OFREP = {"X-Flagstream-Environment": ENV}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


@pytest.fixture
def key() -> str:
    return "m-" + uuid.uuid4().hex[:12]


async def _configure(platform: Platform, key: str) -> None:
    config = {"enabled": True, "off_variation": "off", "default": {"variation": "on"}}
    response = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json=config
    )
    assert response.status_code == 200, response.text


async def _ofrep_until(platform: Platform, key: str, wanted: dict[str, Any], within: float = 10.0) -> Any:
    """The OFREP answer for ``key`` once its metadata holds ``wanted`` (the API's reader follows notices)."""
    answer: Any = None
    async with asyncio.timeout(within):
        while True:
            response = await platform.request(
                "POST", f"/ofrep/v1/evaluate/flags/{key}", role="reader", headers=OFREP, json={"context": {}}
            )
            answer = response.json()
            if response.status_code == 200 and wanted.items() <= answer.get("metadata", {}).items():
                return answer
            await asyncio.sleep(0.02)


async def test_create__explicit_variations__201(platform: Platform, key: str) -> None:
    body = {
        "key": key,
        "kind": "string",
        "variations": [{"key": "red", "value": "#f00"}, {"key": "blue", "value": "#00f"}],
    }

    response = await platform.request("POST", "/api/v1/flags?wait=projected", json=body)

    assert response.status_code == 201, response.text
    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()["flag"]
    assert [v["key"] for v in stored["variations"]] == ["red", "blue"]


async def test_create__explicit_boolean_variations__201(platform: Platform, key: str) -> None:
    body = {"key": key, "variations": [{"key": "yes", "value": True}, {"key": "no", "value": False}]}

    response = await platform.request("POST", "/api/v1/flags?wait=projected", json=body)

    assert response.status_code == 201, response.text


async def test_metadata__set_at_creation__in_the_flag_and_in_ofrep(platform: Platform, key: str) -> None:
    metadata = {"team": "checkout", "ticket": 1234, "ratio": 0.5, "experimental": True}
    created = await platform.request(
        "POST", "/api/v1/flags?wait=projected", json={"key": key, "metadata": metadata}
    )
    assert created.status_code == 201, created.text
    await _configure(platform, key)

    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()["flag"]
    answer = await _ofrep_until(platform, key, metadata)

    assert stored["metadata"] == metadata
    assert answer["metadata"] == {**metadata, "version": 2, "environment": ENV}
    assert answer["value"] is True


async def test_metadata__patched__an_event_and_ofrep_follows(platform: Platform, key: str) -> None:
    await platform.request(
        "POST", "/api/v1/flags?wait=projected", json={"key": key, "metadata": {"team": "a"}}
    )
    await _configure(platform, key)

    patched = await platform.request(
        "PATCH",
        f"/api/v1/flags/{key}?wait=projected",
        json={"metadata": {"team": "b", "tier": 2}, "reason": "moved"},
    )

    assert patched.status_code == 200, patched.text
    history = await platform.request("GET", f"/api/v1/flags/{key}/history")
    assert history.status_code == 200, history.text
    last = max(history.json()["entries"], key=lambda entry: entry["version"])
    assert (last["type"], last["version"], last["reason"]) == ("FlagMetadataUpdated", 3, "moved")
    assert "metadata" in str(last["diff"])
    answer = await _ofrep_until(platform, key, {"team": "b", "tier": 2})
    assert answer["metadata"]["version"] == 3


async def test_metadata__cleared_with_an_empty_map(platform: Platform, key: str) -> None:
    await platform.request(
        "POST", "/api/v1/flags?wait=projected", json={"key": key, "metadata": {"team": "a"}}
    )

    patched = await platform.request("PATCH", f"/api/v1/flags/{key}?wait=projected", json={"metadata": {}})

    assert patched.status_code == 200, patched.text
    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()["flag"]
    assert stored.get("metadata", {}) == {}


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"team": {"nested": 1}}, "metadata.team"),
        ({"team": None}, "metadata.team"),
        ({"team": ["a"]}, "metadata.team"),
        ({"team": "x" * 1025}, "metadata.team"),
        ({str(i): i for i in range(33)}, "metadata"),
    ],
    ids=["object", "null", "array", "long-text", "too-many"],
)
async def test_metadata__invalid_at_creation__422_with_path_and_nothing_written(
    platform: Platform, key: str, metadata: dict[str, Any], path: str
) -> None:
    response = await platform.request(
        "POST", "/api/v1/flags?wait=projected", json={"key": key, "metadata": metadata}
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert path in [d["path"] for d in error["details"]]
    assert (await platform.request("GET", f"/api/v1/flags/{key}")).status_code == 404


async def test_metadata__invalid_patch__422_with_path_and_flag_unchanged(
    platform: Platform, key: str
) -> None:
    await platform.request(
        "POST", "/api/v1/flags?wait=projected", json={"key": key, "metadata": {"team": "a"}}
    )

    response = await platform.request("PATCH", f"/api/v1/flags/{key}", json={"metadata": {"team": [1]}})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert "metadata.team" in [d["path"] for d in response.json()["error"]["details"]]
    flag = (await platform.request("GET", f"/api/v1/flags/{key}")).json()
    assert flag["version"] == 1
    assert flag["flag"]["metadata"] == {"team": "a"}
