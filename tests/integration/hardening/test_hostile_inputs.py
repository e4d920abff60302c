"""Hostile inputs: each a clear 4xx with a stable code, and nothing written (the event table unchanged)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

FLAGS = "/api/v1/flags"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        yield p


@pytest.fixture(scope="module")
async def flag(platform: Platform) -> str:
    key = "h-" + uuid.uuid4().hex[:10]
    created = await platform.request("POST", FLAGS, json={"key": key, "name": key})
    assert created.status_code == 201, created.text
    return key


async def _events(platform: Platform) -> int:
    count: int = await platform.container.pool.fetchval("SELECT count(*) FROM events")
    return count


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep_object_text(depth: int) -> str:
    return '{"a": ' * depth + '"leaf"' + "}" * depth


def _deep_array_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def _cases(key: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, method, path, request kwargs)."""
    env = f"{FLAGS}/{key}/environments/production"
    return [
        ("deep nesting in a context", "POST", "/api/v1/evaluate",
         {"content": '{"environment": "production", "context": ' + _deep_object_text(5_000) + "}"}),
        ("deep nesting of arrays", "PUT", env,
         {"content": '{"enabled": true, "rules": ' + _deep_array_text(100_000) + "}"}),
        ("deep nesting in a flag", "POST", FLAGS,
         {"json": {"key": "deep-" + uuid.uuid4().hex[:6], "name": "x", "description": _nested(200)}}),
        ("huge array of tags", "POST", FLAGS,
         {"json": {"key": "tags-" + uuid.uuid4().hex[:6], "name": "x", "tags": ["t"] * 150_000}}),
        ("huge array of flags to evaluate", "POST", "/api/v1/evaluate",
         {"json": {"environment": "production", "flags": ["f"] * 150_000}}),
        ("huge array of targets", "PUT", env,
         {"json": {"enabled": True, "targets": [{"variation": "on", "values": ["u"] * 150_000}]}}),
        ("long flag key", "POST", FLAGS, {"json": {"key": "k" * 100_000, "name": "x"}}),
        ("long environment name", "PUT", f"{FLAGS}/{key}/environments/{'e' * 5_000}",
         {"json": {"enabled": True}}),
        ("long idempotency key header", "POST", FLAGS,
         {"json": {"key": "idem-" + uuid.uuid4().hex[:6], "name": "x"},
          "headers": {"Idempotency-Key": "i" * 50_000}}),
        ("long If-Match header", "POST", f"{FLAGS}/{key}/archive",
         {"json": {}, "headers": {"If-Match": "9" * 50_000}}),
        ("unicode look-alike in a flag key", "POST", FLAGS,
         {"json": {"key": "fl\u0430g-" + uuid.uuid4().hex[:6], "name": "x"}}),
        ("unicode look-alike in an environment", "PUT", f"{FLAGS}/{key}/environments/pr\u043eduction",
         {"json": {"enabled": True}}),
        ("fullwidth digits in expected_version", "POST", f"{FLAGS}/{key}/archive",
         {"json": {"expected_version": "\uff11"}}),
        ("NUL byte in a flag key", "POST", FLAGS,
         {"json": {"key": "nul\u0000" + uuid.uuid4().hex[:6], "name": "x"}}),
        ("NUL byte in a name", "POST", FLAGS,
         {"json": {"key": "nul-" + uuid.uuid4().hex[:6], "name": "bad\u0000name"}}),
        ("NUL byte in a reason", "POST", f"{FLAGS}/{key}/archive", {"json": {"reason": "why\u0000not"}}),
        ("NUL byte in an object key", "PATCH", f"{FLAGS}/{key}",
         {"content": json.dumps({"description\u0000": "x"})}),
        ("NUL byte in a context value", "POST", "/api/v1/evaluate",
         {"json": {"environment": "production", "context": {"id": "u\u00001"}}}),
        ("XML body", "POST", FLAGS,
         {"content": "<flag><key>x</key></flag>", "headers": {"Content-Type": "application/xml"}}),
        ("multipart body", "POST", FLAGS,
         {"content": "--b\r\n\r\nx\r\n--b--",
          "headers": {"Content-Type": "multipart/form-data; boundary=b"}}),
        ("form body that is not JSON", "POST", FLAGS,
         {"content": "key=x&name=y", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("JSON that is not an object", "POST", FLAGS, {"json": ["key", "x"]}),
        ("invalid UTF-8", "POST", FLAGS, {"content": b'{"key": "\xff\xfe", "name": "x"}'}),
    ]


async def test_hostile_inputs__each_a_clear_4xx__nothing_written(platform: Platform, flag: str) -> None:
    before = await _events(platform)
    failures: list[str] = []
    for name, method, path, kwargs in _cases(flag):
        response = await platform.request(method, path, role="admin", **kwargs)
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if not 400 <= response.status_code < 500 or not code:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")

    assert not failures, "\n".join(failures)
    assert await _events(platform) == before


async def test_control_request__same_shapes_sane__accepted(platform: Platform, flag: str) -> None:
    """The hostile cases fail for their hostility: the same requests, sane, are accepted."""
    key = "ok-" + uuid.uuid4().hex[:8]
    created = await platform.request("POST", FLAGS, json={"key": key, "name": "x", "tags": ["t"] * 10})
    evaluated = await platform.request(
        "POST", "/api/v1/evaluate", json={"environment": "production", "context": _nested(5)}
    )

    assert created.status_code == 201, created.text
    assert evaluated.status_code in (200, 404), evaluated.text


async def test_query_integer_beyond_the_database_range__422_not_500(platform: Platform, flag: str) -> None:
    """Found by schemathesis: a version cursor past int32 reached Postgres and answered 500."""
    response = await platform.request(
        "GET", f"/api/v1/flags/{flag}/history?after_version=653491542781689", role="reader"
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == "after_version"


async def test_nul_byte_in_a_delete_body__422(platform: Platform) -> None:
    """Found by schemathesis: a purge reason with a NUL character answered 500."""
    response = await platform.request(
        "DELETE", "/api/v1/dead-letters/1", role="admin", json={"reason": "bad\u0000reason"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == "reason"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/v1/dead-letters/redrive", {"json": {"min_age_seconds": 43976375620729791963987968}}),
        ("GET", "/api/v1/dead-letters?min_age_seconds=43976375620729791963987968", {}),
    ],
)
async def test_age_beyond_any_duration__422_not_500(
    platform: Platform, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Found by schemathesis: an age of 10^25 seconds overflowed the timedelta and answered 500."""
    response = await platform.request(method, path, role="admin", **kwargs)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == "min_age_seconds"
