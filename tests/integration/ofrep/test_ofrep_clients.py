"""OFREP on the real platform, through clients no one here wrote: openfeature-sdk with
openfeature-provider-ofrep (single evaluations), and requests for the bulk endpoint's ETag caching."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from core.commands import CreateFlag
from core.model import Flag
from events.commands.service import CommandMeta
from events.store.keys import ApiKeyStore
from tests.integration.ofrep.server import serve_http
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

ENV = "production"
HEADER = "X-Flagstream-Environment"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        p.keys["evaluator"] = (await ApiKeyStore(p.store._pool).create("test-evaluator", "evaluator"))[1]
        yield p


@pytest.fixture(scope="module")
async def base_url(platform: Platform) -> AsyncIterator[str]:
    async with serve_http(platform.app) as url:
        yield url


@pytest.fixture(scope="module")
def client(platform: Platform, base_url: str) -> Iterator[OpenFeatureClient]:
    secret = platform.keys["evaluator"]
    provider = OFREPProvider(
        base_url, headers_factory=lambda: {"Authorization": f"Bearer {secret}", HEADER: ENV}
    )
    domain = "ofrep-" + uuid.uuid4().hex[:8]
    api.set_provider_and_wait(provider, domain)
    yield api.get_client(domain)
    api.clear_providers()


async def _flag(platform: Platform, body: dict[str, Any], config: dict[str, Any]) -> str:
    key = "o-" + uuid.uuid4().hex[:10]
    if body:  # typed variations: POST /api/v1/flags refuses explicit variations today (strict tuple parse)
        create = CreateFlag(flag_key=key, flag=Flag.model_validate({"key": key, **body}), expected_version=0)
        outcome = await platform.container.execute(create, CommandMeta(actor="test-admin"))
        assert outcome.version == 1
    else:
        created = await platform.request("POST", "/api/v1/flags", json={"key": key})
        assert created.status_code == 201, created.text
    put = await platform.request("PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json=config)
    assert put.status_code == 200 and put.json()["projected"] is True, put.text
    return key


async def test_boolean__target_and_default__targeting_match_then_default(
    platform: Platform, client: OpenFeatureClient
) -> None:
    key = await _flag(
        platform,
        {},
        {
            "enabled": True,
            "off_variation": "off",
            "targets": [{"variation": "on", "values": ["user-1"]}],
            "rules": [
                {
                    "id": "beta",
                    "when": {"attribute": "plan", "op": "in", "values": ["beta"]},
                    "serve": {"variation": "on"},
                }
            ],
            "default": {"variation": "off"},
        },
    )

    targeted = await asyncio.to_thread(client.get_boolean_details, key, False, EvaluationContext("user-1"))
    ruled = await asyncio.to_thread(
        client.get_boolean_details, key, False, EvaluationContext("u-2", {"plan": "beta"})
    )
    other = await asyncio.to_thread(client.get_boolean_details, key, True, EvaluationContext("user-2"))

    assert (targeted.value, targeted.reason, targeted.variant) == (True, Reason.TARGETING_MATCH, "on")
    assert (ruled.value, ruled.flag_metadata["ruleId"]) == (True, "beta")
    assert (other.value, other.reason, other.variant) == (False, Reason.DEFAULT, "off")
    assert other.flag_metadata["version"] == 2 and other.flag_metadata["environment"] == ENV


async def test_string__no_targeting__static(platform: Platform, client: OpenFeatureClient) -> None:
    variations = [{"key": "blue", "value": "#00f"}, {"key": "red", "value": "#f00"}]
    key = await _flag(
        platform,
        {"kind": "string", "variations": variations},
        {"enabled": True, "default": {"variation": "red"}},
    )

    details = await asyncio.to_thread(client.get_string_details, key, "none", EvaluationContext("u"))

    assert (details.value, details.reason, details.variant, details.error_code) == (
        "#f00",
        Reason.STATIC,
        "red",
        None,
    )


async def test_number__rollout__split_and_missing_targeting_key(
    platform: Platform, client: OpenFeatureClient
) -> None:
    variations = [{"key": "low", "value": 1.5}, {"key": "high", "value": 9.5}]
    rollout = {"rollout": [{"variation": "low", "weight": 50}, {"variation": "high", "weight": 50}]}
    key = await _flag(
        platform, {"kind": "number", "variations": variations}, {"enabled": True, "default": rollout}
    )

    split = await asyncio.to_thread(client.get_float_details, key, 0.0, EvaluationContext("user-7"))
    missing = await asyncio.to_thread(
        client.get_float_details, key, 0.5, EvaluationContext(None, {"plan": "x"})
    )

    assert split.reason == Reason.SPLIT and split.value in (1.5, 9.5)
    assert (missing.value, missing.reason, missing.error_code) == (
        0.5,
        Reason.ERROR,
        ErrorCode.TARGETING_KEY_MISSING,
    )


async def test_object__disabled_flag__off_variation_disabled(
    platform: Platform, client: OpenFeatureClient
) -> None:
    variations = [{"key": "a", "value": {"limit": 3}}, {"key": "b", "value": {"limit": 9}}]
    key = await _flag(
        platform,
        {"kind": "json", "variations": variations},
        {"enabled": False, "off_variation": "a", "default": {"variation": "b"}},
    )

    details = await asyncio.to_thread(client.get_object_details, key, {}, EvaluationContext("u"))

    assert (details.value, details.reason, details.variant) == ({"limit": 3}, Reason.DISABLED, "a")


async def test_unknown_flag__flag_not_found(client: OpenFeatureClient) -> None:
    details = await asyncio.to_thread(
        client.get_boolean_details, "no-such-flag", True, EvaluationContext("u")
    )

    assert (details.value, details.reason, details.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )


def _post(url: str, secret: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(
        url, json=body, headers={"Authorization": f"Bearer {secret}", HEADER: ENV, **headers}, timeout=5
    )


async def test_bulk__etag__304_until_a_flag_changes(platform: Platform, base_url: str) -> None:
    key = await _flag(platform, {}, {"enabled": True, "off_variation": "off", "default": {"variation": "on"}})
    url = base_url + "/ofrep/v1/evaluate/flags"
    secret = platform.keys["evaluator"]

    first = await asyncio.to_thread(_post, url, secret, {"context": {"targetingKey": "u"}})
    etag = first.headers["ETag"]
    again = await asyncio.to_thread(
        _post, url, secret, {"context": {"targetingKey": "u"}}, **{"If-None-Match": etag}
    )
    await platform.request("POST", f"/api/v1/flags/{key}/environments/{ENV}/disable?wait=projected")
    changed = await asyncio.to_thread(
        _post, url, secret, {"context": {"targetingKey": "u"}}, **{"If-None-Match": etag}
    )

    assert first.status_code == 200 and etag.startswith('"')
    answer = next(f for f in first.json()["flags"] if f["key"] == key)
    assert answer == {
        "key": key,
        "value": True,
        "variant": "on",
        "reason": "STATIC",
        "metadata": {"version": 2, "environment": ENV},
    }
    assert again.status_code == 304 and again.headers["ETag"] == etag and again.content == b""
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert next(f for f in changed.json()["flags"] if f["key"] == key)["reason"] == "DISABLED"


async def test_bulk__targeting_key_missing__failure_item(platform: Platform, base_url: str) -> None:
    rollout = {"rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}]}
    key = await _flag(platform, {}, {"enabled": True, "default": rollout})

    response = await asyncio.to_thread(
        _post, base_url + "/ofrep/v1/evaluate/flags", platform.keys["evaluator"], {"context": {}}
    )

    item = next(f for f in response.json()["flags"] if f["key"] == key)
    assert response.status_code == 200
    assert item["errorCode"] == "TARGETING_KEY_MISSING" and item["errorDetails"] and "value" not in item


@pytest.mark.parametrize(
    ("path", "content", "headers", "code"),
    [
        ("/flags/x", b"{not json", {HEADER: ENV}, "PARSE_ERROR"),
        ("/flags/x", b"[1]", {HEADER: ENV}, "PARSE_ERROR"),
        ("/flags/x", b'{"context": 5}', {HEADER: ENV}, "INVALID_CONTEXT"),
        ("/flags/x", b'{"context": {}}', {}, "INVALID_CONTEXT"),
        ("/flags", b'{"context": "a"}', {HEADER: ENV}, "INVALID_CONTEXT"),
        ("/flags", b"{", {HEADER: ENV}, "PARSE_ERROR"),
    ],
)
async def test_bad_request__400_with_error_code_and_details(
    platform: Platform, path: str, content: bytes, headers: dict[str, str], code: str
) -> None:
    response = await platform.request(
        "POST", "/ofrep/v1/evaluate" + path, role="evaluator", content=content, headers=headers
    )

    body = response.json()
    assert response.status_code == 400
    assert body["errorCode"] == code and body["errorDetails"]
    assert body.get("key") == ("x" if path == "/flags/x" else None)


async def test_evaluator_role__evaluates_but_may_not_write_or_read(platform: Platform) -> None:
    write = await platform.request("POST", "/api/v1/flags", role="evaluator", json={"key": "nope"})
    read = await platform.request("GET", "/api/v1/flags", role="evaluator")
    evaluate = await platform.request(
        "POST", "/ofrep/v1/evaluate/flags", role="evaluator", json={"context": {}}, headers={HEADER: ENV}
    )
    anonymous = await platform.client.post("/ofrep/v1/evaluate/flags", json={}, headers={HEADER: ENV})
    alerts_key = await platform.request(
        "POST", "/ofrep/v1/evaluate/flags/x", role="alerts", json={}, headers={HEADER: ENV}
    )

    assert (write.status_code, read.status_code, evaluate.status_code) == (403, 403, 200)
    assert (anonymous.status_code, alerts_key.status_code) == (401, 403)
