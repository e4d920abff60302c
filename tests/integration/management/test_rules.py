"""Rules validate / preview / templates / attributes on the real stack; a preview agrees with evaluation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.management.support import create_flag, save_config
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

CONFIG: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["vip"]}],
    "rules": [
        {
            "id": "beta",
            "when": {"attribute": "k", "op": "in_segment", "values": ["SEGMENT"]},
            "serve": {"variation": "on"},
        },
        {
            "id": "north-america",
            "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        },
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


@pytest.fixture
async def setup(platform: Platform) -> tuple[str, dict[str, Any]]:
    """A flag of this test's own and a segment its config uses."""
    flag, segment = "f-" + uuid.uuid4().hex[:10], "beta-" + uuid.uuid4().hex[:8]
    made = await platform.request(
        "POST",
        "/api/v1/segments",
        json={"key": segment, "when": {"attribute": "plan", "op": "eq", "values": ["beta"]}},
    )
    assert made.status_code == 201, made.text
    await create_flag(platform, {"key": flag})
    config = {
        **CONFIG,
        "rules": [
            {**CONFIG["rules"][0], "when": {**CONFIG["rules"][0]["when"], "values": [segment]}},
            CONFIG["rules"][1],
        ],
    }
    return flag, config


async def test_validate__every_problem_with_its_path(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, _ = setup
    config = {
        "enabled": True,
        "rules": [
            {
                "id": "a",
                "when": {"attribute": "k", "op": "in_segment", "values": ["no-such-segment"]},
                "serve": {"variation": "maybe"},
            },
        ],
    }
    response = await platform.request(
        "POST",
        "/api/v1/rules/validate",
        role="reader",
        json={"flag": flag, "environment": "prod", "config": config},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False
    assert {p["path"] for p in body["problems"]} == {
        "config.rules[0].serve.variation",
        "config.rules[0].when.values[0]",
        "config.default",
    }


async def test_validate__structural_error__paths_under_config(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, _ = setup
    config = {"rules": [{"id": "a", "when": {"attribute": "age", "op": "lt", "values": ["x"]}, "serve": {}}]}
    body = (
        await platform.request(
            "POST", "/api/v1/rules/validate", json={"flag": flag, "environment": "prod", "config": config}
        )
    ).json()
    assert body["valid"] is False
    assert (
        all(p["path"].startswith("config.rules[0]") for p in body["problems"]) and len(body["problems"]) == 2
    )


async def test_validate__warnings_and_complexity(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, config = setup
    shadowed = {
        "id": "us-pro",
        "when": {
            "all": [
                {"attribute": "country", "op": "eq", "values": ["US"]},
                {"attribute": "plan", "op": "eq", "values": ["pro"]},
            ]
        },
        "serve": {"variation": "on"},
    }
    catch_all = {"id": "everyone", "serve": {"variation": "off"}}
    late = {"id": "late", "when": {"attribute": "plan", "op": "exists"}, "serve": {"variation": "on"}}
    config = {**config, "rules": [*config["rules"], shadowed, catch_all, late]}

    body = (
        await platform.request(
            "POST", "/api/v1/rules/validate", json={"flag": flag, "environment": "prod", "config": config}
        )
    ).json()

    assert body["valid"] is True, body
    assert [(w["path"], w["code"]) for w in body["warnings"]] == [
        ("config.rules[2]", "rule_shadowed"),
        ("config.rules[4]", "rule_unreachable"),
    ]
    assert body["complexity"] > 0


async def test_validate__unknown_flag__404(platform: Platform) -> None:
    response = await platform.request(
        "POST",
        "/api/v1/rules/validate",
        json={"flag": "nope-" + uuid.uuid4().hex[:6], "environment": "prod", "config": {}},
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "flag_not_found"


async def test_preview__unsaved_config__agrees_with_evaluation_once_saved(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, config = setup
    contexts = [
        {
            "targetingKey": f"user-{i}",
            "country": ["US", "FR", "CA"][i % 3],
            "plan": "beta" if i % 5 == 0 else "free",
        }
        for i in range(40)
    ]
    contexts.append({"targetingKey": "vip", "country": "FR"})

    preview = await platform.request(
        "POST",
        "/api/v1/rules/preview",
        role="reader",
        json={"flag": flag, "environment": "prod", "config": config, "contexts": contexts},
    )

    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert sum(body["counts"].values()) == len(contexts)
    assert {r["reason"] for r in body["results"]} >= {"TARGETING_MATCH", "SPLIT", "DEFAULT"}
    assert body["results"][-1]["variation"] == "on" and body["results"][-1]["key"] == "vip"
    assert {r["rule_id"] for r in body["results"]} >= {"beta", "north-america"}

    await save_config(platform, flag, "prod", config)  # what PUT .../environments/prod does
    for context, previewed in zip(contexts, body["results"], strict=True):
        evaluated = await platform.request(
            "POST",
            "/api/v1/evaluate",
            role="reader",
            json={"environment": "prod", "context": context, "flags": [flag]},
        )
        result = evaluated.json()["results"][flag]
        assert (result["variation"], result["reason"], result["rule_id"]) == (
            previewed["variation"],
            previewed["reason"],
            previewed["rule_id"],
        )


async def test_preview__unsaved_flag_object__previewed(platform: Platform) -> None:
    flag = {
        "key": "draft-" + uuid.uuid4().hex[:6],
        "kind": "string",
        "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
    }
    config = {
        "enabled": True,
        "rules": [
            {
                "id": "de",
                "when": {"attribute": "country", "op": "eq", "values": ["DE"]},
                "serve": {"variation": "b"},
            }
        ],
        "default": {"variation": "a"},
    }
    body = (
        await platform.request(
            "POST",
            "/api/v1/rules/preview",
            json={
                "flag": flag,
                "environment": "dev",
                "config": config,
                "contexts": [{"country": "DE"}, {"country": "FR"}],
            },
        )
    ).json()
    assert (
        [r["value"] for r in body["results"]] == ["B", "A"]
        and body["counts"] == {"a": 1, "b": 1}
        and body["version"] == 0
    )


async def test_preview__invalid_config__422_with_paths(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, _ = setup
    response = await platform.request(
        "POST",
        "/api/v1/rules/preview",
        json={
            "flag": flag,
            "environment": "prod",
            "config": {"enabled": True, "default": {"variation": "zzz"}},
            "contexts": [{}],
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"path": "config.default.variation", "message": response.json()["error"]["details"][0]["message"]}
    ]
    empty = await platform.request(
        "POST",
        "/api/v1/rules/preview",
        json={"flag": flag, "environment": "prod", "config": {}, "contexts": []},
    )
    assert empty.status_code == 422 and empty.json()["error"]["details"][0]["path"] == "contexts"


async def test_templates__listed_and_each_validates(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, _ = setup
    listing = await platform.request("GET", "/api/v1/rules/templates", role="reader")
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert len(items) == 6
    for template in items:
        if template["id"] == "beta-segment":
            continue  # names a segment that this platform does not have
        body = (
            await platform.request(
                "POST",
                "/api/v1/rules/validate",
                json={"flag": flag, "environment": "prod", "config": template["config"]},
            )
        ).json()
        assert body["valid"] is True, (template["id"], body)


async def test_attributes__from_rules_with_examples__from_contexts_types_only(
    platform: Platform, setup: tuple[str, dict[str, Any]]
) -> None:
    flag, config = setup
    secret_email = f"{uuid.uuid4().hex}@private.example"
    await platform.request(
        "POST",
        "/api/v1/rules/preview",
        json={
            "flag": flag,
            "environment": "prod",
            "config": config,
            "contexts": [{"email": secret_email, "age": 40}],
        },
    )
    await save_config(platform, flag, "prod", config)

    response = await platform.request("GET", "/api/v1/attributes", role="reader")

    assert response.status_code == 200
    found = {a["name"]: a for a in response.json()["items"]}
    assert found["country"]["examples"][:2] == ["US", "CA"] and "rules" in found["country"]["sources"]
    assert found["plan"]["types"] == ["string"]
    assert found["email"] == {**found["email"], "types": ["string"], "examples": [], "sources": ["contexts"]}
    assert found["age"]["types"] == ["number"]
    assert secret_email not in response.text
    raw = await platform.redis.hgetall(f"{platform.settings.redis_namespace}:attributes:contexts")
    assert secret_email not in repr(raw)
