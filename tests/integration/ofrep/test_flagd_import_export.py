"""flagd import/export through the API and the CLI on the real platform: dry run, import, evaluation of
the imported flags (flagd-testbed's answers), re-import unchanged, export -> import round trip, refusals."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app as cli
from tests.integration.ofrep.server import serve_http
from tests.integration.platform import Platform, module_database, start_platform
from tests.unit.core.flagd.test_flagd_import import TESTBED

pytestmark = pytest.mark.integration

ENV = "production"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


def _document() -> tuple[dict[str, Any], str]:
    """The testbed document under fresh keys (flags are global to the module's platform)."""
    suffix = uuid.uuid4().hex[:6]
    document = copy.deepcopy(TESTBED)
    flags = document["flags"]
    document["flags"] = {f"{key}-{suffix}": spec for key, spec in flags.items()}
    fractional = document["flags"][f"fractional-flag-{suffix}"]["targeting"]["fractional"]
    fractional[0] = {"cat": ["fractional-flag", {"var": "user.name"}]}  # flagd hashed the testbed's own key
    return document, suffix


async def _import(platform: Platform, document: Any, dry_run: bool = False, role: str = "writer") -> Any:
    return await platform.request(
        "POST",
        f"/api/v1/flagd/import?environment={ENV}&dry_run={str(dry_run).lower()}",
        role=role,
        content=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )


async def _evaluate(platform: Platform, key: str, context: dict[str, Any]) -> Any:
    response = await platform.request(
        "POST",
        f"/ofrep/v1/evaluate/flags/{key}",
        json={"context": context},
        headers={"X-Flagstream-Environment": ENV},
    )
    return response.json()


async def test_import__dry_run_then_import_then_evaluate_like_flagd(platform: Platform) -> None:
    document, suffix = _document()
    key = f"fractional-flag-{suffix}"

    dry = await _import(platform, document, dry_run=True)
    absent = await platform.request("GET", f"/api/v1/flags/{key}")
    done = await _import(platform, document)
    for flag_key in document["flags"]:
        assert await platform.container.wait_projected(flag_key, 1, ENV)
    answers = {
        name: (await _evaluate(platform, key, {"user": {"name": name}}))["value"]
        for name in ("jack", "queen")
    }
    again = await _import(platform, document)

    assert dry.status_code == 200 and {s["action"] for s in dry.json()["flags"]} == {"create"}
    assert absent.status_code == 404
    assert done.status_code == 200 and [s["version"] for s in done.json()["flags"]] == [1, 1, 1, 1]
    assert answers == {"jack": "hearts", "queen": "spades"}  # flagd-testbed, fractional v2
    assert {s["action"] for s in again.json()["flags"]} == {"unchanged"}, again.json()


async def test_export_then_import__same_document(platform: Platform) -> None:
    document, suffix = _document()
    await _import(platform, document)
    for key in document["flags"]:
        assert await platform.container.wait_projected(key, 1, ENV)

    exported = (await platform.request("GET", f"/api/v1/flagd/export?environment={ENV}")).json()
    mine = {"flags": {k: v for k, v in exported["flags"].items() if k.endswith(suffix)}}
    reimported = await _import(platform, mine)

    assert set(mine["flags"]) == set(document["flags"])
    assert {s["action"] for s in reimported.json()["flags"]} == {"unchanged"}, reimported.json()


async def test_import__inexpressible__422_with_path_and_nothing_written(platform: Platform) -> None:
    key = "sv-" + uuid.uuid4().hex[:6]
    targeting = {"if": [{"sem_ver": [{"var": "v"}, "~", "1.2.0"]}, "on", "off"]}
    document = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": targeting,
            }
        }
    }

    refused = await _import(platform, document)
    forbidden = await _import(platform, document, role="reader")
    absent = await platform.request("GET", f"/api/v1/flags/{key}")

    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "flagd_unsupported"
    assert error["details"][0]["path"] == f"$.flags.{key}.targeting.if[0].sem_ver[1]"
    assert (forbidden.status_code, absent.status_code) == (403, 404)


async def test_cli__import_flagd_file_then_export(platform: Platform, tmp_path: Path) -> None:
    document, suffix = _document()
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(document))
    runner = CliRunner()
    async with serve_http(platform.app) as url:
        env = {"FLAGSTREAM_API_URL": url, "FLAGSTREAM_API_KEY": platform.keys["writer"]}
        dry = await asyncio.to_thread(
            runner.invoke, cli, ["import", "flagd", str(source), "-e", ENV, "--dry-run"], env=env
        )
        done = await asyncio.to_thread(
            runner.invoke, cli, ["import", "flagd", str(source), "-e", ENV], env=env
        )
        for key in document["flags"]:
            assert await platform.container.wait_projected(key, 1, ENV)
        exported = await asyncio.to_thread(runner.invoke, cli, ["export", "flagd", "-e", ENV], env=env)
        source.write_text("{")
        bad = await asyncio.to_thread(
            runner.invoke, cli, ["import", "flagd", str(source), "-e", ENV], env=env
        )

    assert dry.exit_code == 0 and dry.stdout.count("create") == 4, dry.output
    assert done.exit_code == 0 and done.stdout.count("create") == 4, done.output
    assert exported.exit_code == 0
    assert {k for k in json.loads(exported.stdout)["flags"] if k.endswith(suffix)} == set(document["flags"])
    assert bad.exit_code == 1 and "flagd_unsupported" in bad.output


async def _evaluate_until(platform: Platform, key: str, context: dict[str, Any], within: float = 10.0) -> Any:
    """The OFREP answer once the API's reader has the flag (it follows change notices)."""
    async with asyncio.timeout(within):
        while True:
            answer = await _evaluate(platform, key, context)
            if answer.get("errorCode") != "FLAG_NOT_FOUND":
                return answer
            await asyncio.sleep(0.02)


async def test_import__metadata_kept__in_ofrep_answers_and_in_the_export(platform: Platform) -> None:
    key = "meta-" + uuid.uuid4().hex[:8]
    document = {
        "metadata": {"flagSetId": "shop", "version": "v1"},
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"a": "A", "b": "B", "fallback": "F"},
                "defaultVariant": "fallback",
                "targeting": {"fractional": [["a", 1], ["b", 1]]},
                "metadata": {"team": "checkout", "version": 3},
            }
        },
    }

    done = await _import(platform, document)
    assert done.status_code == 200, done.text
    assert await platform.container.wait_projected(key, 1, ENV)
    split = await _evaluate_until(platform, key, {"targetingKey": "user-1"})
    numeric_key = await _evaluate(platform, key, {"targetingKey": 42})
    exported = (await platform.request("GET", f"/api/v1/flagd/export?environment={ENV}")).json()

    assert split["reason"] == "SPLIT"
    # The flag's metadata (document's merged under it, the flag's version winning), our keys beside it.
    assert split["metadata"] == {"flagSetId": "shop", "team": "checkout", "version": 1, "environment": ENV}
    # flagd: a non-string targetingKey makes fractional answer null -> defaultVariant, DEFAULT.
    assert (numeric_key["variant"], numeric_key["reason"]) == ("fallback", "DEFAULT")
    assert exported["flags"][key]["metadata"] == {"flagSetId": "shop", "version": 3, "team": "checkout"}
    assert exported["flags"][key]["targeting"] == {"fractional": [["a", 1], ["b", 1]]}
