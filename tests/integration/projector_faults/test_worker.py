"""``python -m workers.projector`` with a dead-letter queue: poison parked while other flags flow,
``/metrics`` served with the breaker state, SIGTERM -> exit 0 within the grace period."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis

from core.evolve import replay
from core.state import FlagState
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projector_faults._scenario import Poisoned

pytestmark = pytest.mark.integration

_GRACE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _parked(database_url: str) -> set[tuple[str | None, int | None, str]]:
    async def fetch() -> set[tuple[str | None, int | None, str]]:
        connection = await asyncpg.connect(database_url)
        try:
            exists = await connection.fetchval("SELECT to_regclass('dead_letters') IS NOT NULL")
            if not exists:
                return set()
            rows = await connection.fetch(
                "SELECT flag_key, version, error_class FROM dead_letters WHERE stage = 'projector'"
            )
        finally:
            await connection.close()
        return {(r["flag_key"], r["version"], r["error_class"]) for r in rows}

    return asyncio.run(fetch())


def test_projector_worker__poison_parked_metrics_served__sigterm_exits_zero_within_grace(
    fresh_redis: str, fresh_database: str, kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    scenario = Poisoned()
    asyncio.run(create_topic(kafka_bootstrap, unique_topic, partitions=1))
    asyncio.run(publish(kafka_bootstrap, unique_topic, scenario.records(), key=b"c"))
    metrics_port = _free_port()
    env = {
        **os.environ,
        "REDIS_URL": fresh_redis,
        "DATABASE_URL": fresh_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLAGSTREAM_FLAG_EVENTS_TOPIC": unique_topic,
        "FLAGSTREAM_PROJECTOR_GROUP": f"g-{unique_topic}",
        "FLAGSTREAM_METRICS_PORT": str(metrics_port),
        "FLAGSTREAM_SHUTDOWN_GRACE_SECONDS": str(_GRACE_SECONDS),
        "FLAGSTREAM_LOG_JSON": "false",
        "FLAGSTREAM_DATA_DIR": "/nonexistent-flagstream-data",
    }
    client = redis.Redis.from_url(fresh_redis, decode_responses=True)
    # a file, not a pipe nobody reads while the worker runs: a full pipe would block the worker
    log = tmp_path / "projector.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.projector"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        expected_b = replay(scenario.b).model_dump_json()
        _wait_for(lambda: client.get("fs:state:b") == expected_b, 40, "flag b projected")
        _wait_for(lambda: len(_parked(fresh_database)) == 3, 60, "three projector dead letters")
        assert _parked(fresh_database) == {
            ("a", 3, "UnsupportedSchemaVersion"),
            ("a", 4, "WaitingBehindDeadLetter"),
            ("c", None, "ValidationError"),
        }
        state_a = client.get("fs:state:a")
        assert state_a is not None and FlagState.model_validate_json(state_a).version == 2  # held at v2
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'flagstream_circuit_breaker_state{breaker="redis-projector"} 0.0' in body
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=_GRACE_SECONDS + 10)
        elapsed = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
        client.close()
    output = log.read_text(errors="replace")[-4000:]
    assert code == 0, output
    assert elapsed < _GRACE_SECONDS + 2, output
