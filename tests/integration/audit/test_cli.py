"""``flagstream audit``: verify exits non-zero on a tampered log; history and export print the log."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from typer.testing import CliRunner

from cli.audit import app
from tests.integration.audit.support import apply_commands, checkout_story, create_topic, produce, store

pytestmark = pytest.mark.integration


def _point_at(monkeypatch: pytest.MonkeyPatch, bootstrap: str, database: str, topic: str) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("FLAGSTREAM_FLAG_EVENTS_TOPIC", topic)


def test_audit_cli__intact_then_tampered__verify_exit_codes(
    kafka_bootstrap: str, fresh_database: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    tampered_topic = unique_topic + ".tampered"
    body = orjson.loads(events[2].to_json())
    body["reason"] = "nothing to see"
    forged = ("new-checkout", orjson.dumps(body, option=orjson.OPT_SORT_KEYS))

    async def given() -> None:
        await create_topic(kafka_bootstrap, unique_topic)
        await create_topic(kafka_bootstrap, tampered_topic)
        await produce(kafka_bootstrap, unique_topic, events)
        await produce(kafka_bootstrap, tampered_topic, [*events[:2], forged, events[3]])
        await store(fresh_database, events)

    asyncio.run(given())
    runner = CliRunner()

    _point_at(monkeypatch, kafka_bootstrap, fresh_database, unique_topic)
    intact = runner.invoke(app, ["verify", "--every", "2"])
    history = runner.invoke(app, ["history", "new-checkout", "--type", "RulesChanged"])
    exported = runner.invoke(app, ["export", "--format", "csv"])
    _point_at(monkeypatch, kafka_bootstrap, fresh_database, tampered_topic)
    broken = runner.invoke(app, ["verify"])

    assert intact.exit_code == 0, intact.output
    assert json.loads(intact.stdout.splitlines()[-1])["ok"] is True
    assert [json.loads(line)["version"] for line in history.stdout.splitlines()] == [2]
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 5
    assert broken.exit_code == 1
    assert "tampered" in json.loads(broken.stdout.splitlines()[-1])["first_discrepancy"]
