"""``python -m workers.projector`` (SIGTERM -> exit 0) and ``flagstream projections check|rebuild``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cli.projections import app
from core.evolve import replay
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration


def _env(redis_url: str, bootstrap: str, topic: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FLAGSTREAM_DATABASE_URL")}
    return {  # no DATABASE_URL: the projector runs without its dead-letter queue
        **inherited,
        "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FLAGSTREAM_FLAG_EVENTS_TOPIC": topic,
        "FLAGSTREAM_PROJECTOR_GROUP": f"g-{topic}",
        "FLAGSTREAM_DATA_DIR": "/nonexistent-flagstream-data",
    }


def _wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_projector_worker__sigterm__projects_then_exits_zero(
    fresh_redis: str, kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    writer = StreamWriter()
    events = [writer.create(flag_doc("a", "production"))]
    events += [writer.configure("a", "production", on_config(i % 2 == 0)) for i in range(5)]
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions=1))
    asyncio.run(publish(kafka_bootstrap, unique_topic, events))
    client = redis.Redis.from_url(fresh_redis, decode_responses=True)
    # a file, not a pipe nobody reads while the worker runs: a full pipe would block the worker
    log = tmp_path / "projector.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.projector"],
            env=_env(fresh_redis, kafka_bootstrap, unique_topic),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        expected = replay(events).model_dump_json()
        try:
            _wait_for(lambda: client.get("fs:state:a") == expected, 40, "the projection")
        except AssertionError:
            worker.kill()
            raise AssertionError(f"worker did not project; its output:\n{log.read_text()[-4000:]}") from None
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
        client.close()
    assert code == 0, log.read_text(errors="replace")[-4000:]


def test_cli_check_then_rebuild__zero_drift_and_switched(
    fresh_redis: str, kafka_bootstrap: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = StreamWriter()
    events = [
        writer.create(flag_doc("a", "production")),
        writer.configure("a", "production", on_config(True)),
    ]
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions=1))
    asyncio.run(publish(kafka_bootstrap, unique_topic, events))
    for name, value in _env(fresh_redis, kafka_bootstrap, unique_topic).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    wiped = runner.invoke(app, ["check"])  # nothing projected yet: everything drifts
    rebuilt = runner.invoke(app, ["rebuild"])
    checked = runner.invoke(app, ["check", "--environment", "production"])

    assert wiped.exit_code == 1 and "drift: state:a" in wiped.output
    assert rebuilt.exit_code == 0, rebuilt.output
    assert checked.exit_code == 0 and "no drift" in checked.output, checked.output
    client = redis.Redis.from_url(fresh_redis, decode_responses=True)
    try:
        assert client.get("fs:state:a") == replay(events).model_dump_json()
    finally:
        client.close()
