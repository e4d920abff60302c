"""Two API processes on one Postgres: commands stay correct across processes, and ``--reuse-port``
lets several processes share one port (``flagstream run --api-workers N``).

The per-stream lock of the command service is per process; across processes the unique
``(flag_key, version)`` of the event table is what keeps a stream gapless. These tests race real
``python -m api.serve`` processes against each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from core.envelope import verify_chain
from events.store.db import apply_migrations, create_pool
from events.store.keys import ApiKeyStore
from events.store.postgres import PostgresEventStore
from runtime.processes import find_free_port
from tests.integration.platform import module_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
RACERS_PER_PROCESS = 12


def _config(weight: int) -> dict[str, object]:
    return {
        "enabled": True,
        "off_variation": "off",
        "rules": [
            {
                "id": "everyone",
                "when": {"attribute": "country", "op": "in", "values": ["US"]},
                "serve": {
                    "rollout": [
                        {"variation": "on", "weight": weight},
                        {"variation": "off", "weight": 100 - weight},
                    ]
                },
            }
        ],
        "default": {"variation": "off"},
        "reason": f"race {weight}",
    }


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


@contextlib.contextmanager
def _api_process(
    port: int, env: dict[str, str], log: Path, *, reuse_port: bool
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--reuse-port"] if reuse_port else argv,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def _wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30.0
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the API exited early:\n{_tail(log)}"
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling readiness, bounded by the deadline
    raise AssertionError(f"the API did not start in 30 s:\n{_tail(log)}")


@contextlib.asynccontextmanager
async def _platform_env(
    database_url: str, redis_url: str, kafka_bootstrap: str
) -> AsyncIterator[tuple[dict[str, str], str, PostgresEventStore]]:
    async with module_database(database_url) as database:
        await apply_migrations(database)
        pool = await create_pool(database, min_size=1, max_size=2)
        try:
            secret = (await ApiKeyStore(pool).create("race-admin", "admin"))[1]
            env = {
                **os.environ,
                "FLAGSTREAM_DATABASE_URL": database,
                "FLAGSTREAM_REDIS_URL": redis_url,
                "FLAGSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "FLAGSTREAM_REDIS_NAMESPACE": f"fs-{uuid.uuid4().hex[:10]}",
                "FLAGSTREAM_LOG_JSON": "false",
            }
            yield env, secret, PostgresEventStore(pool)
        finally:
            await pool.close()


async def test_two_processes__unpinned_commands_race__stream_gapless_and_every_2xx_its_own_version(
    database_url: str, redis_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with _platform_env(database_url, redis_url, kafka_bootstrap) as (env, secret, store):
        ports = [find_free_port(), find_free_port()]
        logs = [tmp_path / "api-a.log", tmp_path / "api-b.log"]
        with (
            _api_process(ports[0], env, logs[0], reuse_port=False) as a,
            _api_process(ports[1], env, logs[1], reuse_port=False) as b,
        ):
            for port, process, log in zip(ports, (a, b), logs, strict=True):
                await _wait_until_serving(f"http://127.0.0.1:{port}", process, log)
            headers = {"Authorization": f"Bearer {secret}"}
            clients = [
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=30.0)
                for p in ports
            ]
            try:
                key = f"race-{uuid.uuid4().hex[:8]}"
                created = await clients[0].post("/api/v1/flags", json={"key": key, "name": key})
                assert created.status_code == 201, created.text
                path = f"/api/v1/flags/{key}/environments/production"
                # Both processes load the flag once, so each has it cached before the race starts.
                warm = await asyncio.gather(
                    *(c.put(path, json=_config(w)) for c, w in zip(clients, (1, 2), strict=True))
                )
                assert all(r.status_code == 200 for r in warm), [r.text for r in warm]
                answers = await asyncio.gather(
                    *(clients[i % 2].put(path, json=_config(3 + i)) for i in range(2 * RACERS_PER_PROCESS))
                )
            finally:
                for client in clients:
                    await client.aclose()
        events = await store.read_stream(key)

    statuses = sorted({r.status_code for r in answers})
    assert statuses == [200], [r.text for r in answers if r.status_code != 200]
    versions = [r.json()["version"] for r in answers]
    assert len(set(versions)) == len(versions), f"two answers claim one version: {sorted(versions)}"
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert len(events) == 1 + len(warm) + len(answers)
    assert verify_chain(events, flag_key=key) is None
    by_version = {e.version: e for e in events}
    for answer, weight in zip(answers, range(3, 3 + len(answers)), strict=True):
        payload = by_version[answer.json()["version"]].payload
        assert payload["config"]["rules"][0]["serve"]["rollout"][0]["weight"] == weight


async def test_reuse_port__two_processes_bind_one_port__both_serve(
    database_url: str, redis_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with _platform_env(database_url, redis_url, kafka_bootstrap) as (env, _secret, _store):
        port = find_free_port()
        logs = [tmp_path / "api-1.log", tmp_path / "api-2.log"]
        with (
            _api_process(port, env, logs[0], reuse_port=True) as first,
            _api_process(port, env, logs[1], reuse_port=True) as second,
        ):
            base = f"http://127.0.0.1:{port}"
            await _wait_until_serving(base, first, logs[0])
            await _wait_until_serving(base, second, logs[1])
            deadline = time.monotonic() + 20.0
            # Both processes have finished their start-up (each logs api.started once it serves).
            while not all("api.started" in _tail(log) for log in logs):
                assert time.monotonic() < deadline, [_tail(log) for log in logs]
                assert first.poll() is None and second.poll() is None
                await asyncio.sleep(0.1)  # polling the two logs, bounded by the deadline
            async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
                answers = [(await client.get("/healthz")).status_code for _ in range(5)]
            alive = first.poll() is None and second.poll() is None
    assert alive, "one of the processes could not bind the shared port"
    assert answers == [200] * 5
