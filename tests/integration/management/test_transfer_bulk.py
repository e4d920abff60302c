"""Import/export (dry run first, plan id to apply) and bulk actions, on the real stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.management.support import create_flag
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

ON: dict[str, Any] = {"enabled": True, "off_variation": "off", "default": {"variation": "on"}}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        yield p


def _key(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_export__one_environment__flags_and_segments(platform: Platform) -> None:
    flag, segment = _key(), _key("s")
    await create_flag(platform, {"key": flag, "environments": {"prod": ON, "dev": {"enabled": False}}})
    assert (await platform.request("POST", "/api/v1/segments", json={"key": segment})).status_code == 201

    response = await platform.request("GET", "/api/v1/export?environment=prod", role="reader")

    assert response.status_code == 200
    body = response.json()
    assert body["format"] == "flagstream.export/v1" and body["environment"] == "prod"
    exported = next(f for f in body["flags"] if f["key"] == flag)
    assert list(exported["environments"]) == ["prod"]
    assert segment in [s["key"] for s in body["segments"]]


async def test_import__dry_run_then_apply_with_plan_id(platform: Platform) -> None:
    existing, new, segment = _key(), _key(), _key("s")
    await create_flag(
        platform, {"key": existing, "name": "old", "environments": {"prod": {"enabled": False}}}
    )
    document = {
        "segments": [{"key": segment, "included": ["u-1"]}],
        "flags": [
            {"key": existing, "name": "new name", "environments": {"prod": ON}},
            {"key": new, "environments": {"prod": ON}},
        ],
    }

    dry = await platform.request("POST", "/api/v1/import", role="writer", json=document)

    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dry_run"] is True and plan["results"] is None
    assert [(c["kind"], c["key"], c["action"]) for c in plan["changes"]] == [
        ("segment", segment, "create"),
        ("flag", existing, "update_metadata"),
        ("flag", existing, "set_environment"),
        ("flag", new, "create"),
    ]
    assert await platform.store.read_stream(new) == []  # a dry run writes nothing

    missing = await platform.request("POST", "/api/v1/import?dry_run=false", role="writer", json=document)
    assert missing.status_code == 422 and missing.json()["error"]["details"][0]["path"] == "query.plan_id"
    wrong = await platform.request(
        "POST", "/api/v1/import?dry_run=false&plan_id=0000", role="writer", json=document
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "plan_changed"

    applied = await platform.request(
        "POST",
        f"/api/v1/import?dry_run=false&plan_id={plan['plan_id']}&reason=sync",
        role="writer",
        json=document,
    )

    assert applied.status_code == 200, applied.text
    assert applied.json()["succeeded"] == 4 and applied.json()["failed"] == 0
    events = await platform.store.read_stream(existing)
    assert [e.type for e in events][1:] == ["FlagMetadataUpdated", "EnvironmentConfigured"]
    assert {e.actor for e in events[1:]} == {"test-writer"} and events[-1].reason == "sync"
    again = (await platform.request("POST", "/api/v1/import", role="writer", json=document)).json()
    assert again["changes"] == []


async def test_import__one_change_fails__others_applied_and_reported(platform: Platform) -> None:
    good, bad = _key(), _key()
    document = {
        "flags": [
            {
                "key": bad,
                "environments": {
                    "prod": {**ON, "prerequisites": [{"flag": "no-such-flag", "variation": "on"}]}
                },
            },
            {"key": good, "environments": {"prod": ON}},
        ]
    }
    plan = (await platform.request("POST", "/api/v1/import", json=document)).json()

    applied = (
        await platform.request(
            "POST", f"/api/v1/import?dry_run=false&plan_id={plan['plan_id']}", json=document
        )
    ).json()

    outcome = {r["key"]: r for r in applied["results"]}
    assert outcome[good]["ok"] is True and outcome[bad]["ok"] is False
    assert outcome[bad]["error"]["code"] == "invalid_configuration"
    assert outcome[bad]["error"]["details"][0]["path"].endswith("prerequisites[0].flag")
    assert applied["succeeded"] == 1 and applied["failed"] == 1


async def test_import__bad_document__422_with_paths_and_reader_refused(platform: Platform) -> None:
    response = await platform.request(
        "POST", "/api/v1/import", json={"format": "other", "flags": [{"key": "Bad"}]}
    )
    assert response.status_code == 422
    assert {d["path"] for d in response.json()["error"]["details"]} >= {"format", "flags[0].key"}
    refused = await platform.request("POST", "/api/v1/import", role="reader", json={})
    assert refused.status_code == 403


async def test_bulk__each_flag_its_own_event__failures_explained(platform: Platform) -> None:
    first, second, missing = _key(), _key(), _key()
    for key in (first, second):
        await create_flag(
            platform,
            {"key": key, "environments": {"prod": {"enabled": False, "default": {"variation": "on"}}}},
        )

    response = await platform.request(
        "POST",
        "/api/v1/bulk/flags",
        role="writer",
        json={
            "action": "enable",
            "environment": "prod",
            "flags": [first, missing, second],
            "reason": "launch",
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["succeeded"] == [first, second] and body["failed"] == [missing]
    assert body["results"][1]["error"]["code"] == "flag_not_found"
    for key in (first, second):
        events = await platform.store.read_stream(key)
        assert (
            events[-1].type == "FlagEnabled"
            and events[-1].reason == "launch"
            and events[-1].actor == "test-writer"
        )

    archived = (
        await platform.request("POST", "/api/v1/bulk/flags", json={"action": "archive", "flags": [first]})
    ).json()
    assert archived["succeeded"] == [first]


async def test_bulk__bad_request__422(platform: Platform) -> None:
    no_env = await platform.request("POST", "/api/v1/bulk/flags", json={"action": "disable", "flags": ["a"]})
    assert no_env.status_code == 422
    duplicate = await platform.request(
        "POST", "/api/v1/bulk/flags", json={"action": "archive", "flags": ["a", "a"]}
    )
    assert duplicate.status_code == 422
    bad_key = await platform.request(
        "POST", "/api/v1/bulk/flags", json={"action": "archive", "flags": ["Not A Key"]}
    )
    assert bad_key.status_code == 422 and bad_key.json()["error"]["details"][0]["path"] == "flags[0]"
    reader = await platform.request(
        "POST", "/api/v1/bulk/flags", role="reader", json={"action": "archive", "flags": ["a"]}
    )
    assert reader.status_code == 403
