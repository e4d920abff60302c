"""SIGTERM to the API process (``python -m api.serve``): it stops accepting connections, finishes
the request in flight, closes its pools and exits 0 within the grace period."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from events.store.db import apply_migrations, create_pool
from events.store.keys import ApiKeyStore
from events.store.postgres import PostgresEventStore
from runtime.processes import find_free_port
from tests.integration.platform import module_database

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
GRACE_SECONDS = 10
IN_FLIGHT_SECONDS = 3.0  # how long a ?wait=projected command waits when nothing projects
EXIT_BOUND_SECONDS = (
    GRACE_SECONDS + 10.0
)  # grace + lifespan shutdown (pool close is bounded) + interpreter exit


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _spawn_api(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


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


async def _wait_until_refused(base: str, within: float) -> bool:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=0.5) as probe:
        while time.monotonic() < deadline:
            try:
                await probe.get("/healthz")
            except httpx.ConnectError:
                return True
            await asyncio.sleep(0.05)  # polling the listening socket, bounded by the deadline
    return False


async def _wait_until_stored(store: PostgresEventStore, key: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not await store.read_stream(key):
        assert time.monotonic() < deadline, f"{key} was never appended"
        await asyncio.sleep(0.05)  # polling Postgres for the in-flight command's event


async def test_sigterm__request_in_flight__completes_2xx_new_connections_refused_exit_0_in_time(
    database_url: str, redis_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with module_database(database_url) as database:
        await apply_migrations(database)
        pool = await create_pool(database, min_size=1, max_size=2)
        try:
            secret = (await ApiKeyStore(pool).create("shutdown-admin", "admin"))[1]
            store = PostgresEventStore(pool)
            port = find_free_port()
            base = f"http://127.0.0.1:{port}"
            log = tmp_path / "api.log"
            env = {
                **os.environ,
                "FLAGSTREAM_DATABASE_URL": database,
                "FLAGSTREAM_REDIS_URL": redis_url,
                "FLAGSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "FLAGSTREAM_REDIS_NAMESPACE": f"fs-{uuid.uuid4().hex[:10]}",
                "FLAGSTREAM_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
                "FLAGSTREAM_WAIT_PROJECTED_TIMEOUT_SECONDS": str(IN_FLIGHT_SECONDS),
                "FLAGSTREAM_LOG_JSON": "false",
            }
            process = _spawn_api(port, env, log)
            try:
                await _wait_until_serving(base, process, log)
                headers = {"Authorization": f"Bearer {secret}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
                    warm = [
                        await client.post("/api/v1/flags", json={"key": k, "name": k})
                        for k in (f"s-{uuid.uuid4().hex[:10]}" for _ in range(3))
                    ]
                    key = f"s-inflight-{uuid.uuid4().hex[:8]}"
                    in_flight = asyncio.create_task(
                        client.post("/api/v1/flags?wait=projected", json={"key": key, "name": key})
                    )
                    await _wait_until_stored(store, key, within=10.0)  # appended: now waiting for projection
                    signalled = time.monotonic()
                    process.send_signal(signal.SIGTERM)
                    refused = await _wait_until_refused(base, within=IN_FLIGHT_SECONDS - 1.0)
                    still_in_flight_when_refused = not in_flight.done()
                    finished = await in_flight
                    exit_code = await asyncio.to_thread(process.wait, EXIT_BOUND_SECONDS)
                    exited_after = time.monotonic() - signalled
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
        finally:
            await pool.close()

    output = _tail(log)
    assert [r.status_code for r in warm] == [201, 201, 201]
    assert refused, "new connections were still accepted after SIGTERM"
    assert still_in_flight_when_refused
    assert finished.status_code == 201, finished.text
    assert finished.json()["projected"] is False
    assert exit_code == 0, output[-3000:]
    assert exited_after < EXIT_BOUND_SECONDS
    assert "api.stopped" in output
    print(f"SIGTERM: in-flight answered {finished.status_code}, exit {exit_code} after {exited_after:.2f}s")
