"""Automatic rollback latency: alert accepted (2xx) -> rollback visible in a reader.

    python benchmarks/rollback.py [--alerts 100] [--concurrency 1]

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), runs the API
(uvicorn), the relay, the projector and the rollback worker as separate processes (as in
production), with the worker's default confirmation delay set to 0. It creates ``--alerts`` flags
in ``production``, each opted in to ``auto_rollback`` and then enabled (the change to blame), and
posts one firing Alertmanager alert naming each flag — ``--concurrency`` posters, each with one alert
in flight. A reader in this process (the same ``EnvironmentReader`` the API evaluates with) tells
when each flag's rollback (its next version) becomes visible; the latency is measured from the
alert's 2xx to that moment.

Path measured: API append -> relay -> Kafka (metric-alerts) -> rollback worker -> command path
(Postgres) -> relay -> Kafka (flag-events) -> projector -> Redis -> reader. Target: p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spine import _percentile, _wait_http

ENVIRONMENT = "production"


def _config() -> dict[str, Any]:
    return {"enabled": False, "off_variation": "off", "default": {"variation": "on"},
            "auto_rollback": {"enabled": True, "cooldown_seconds": 0}}


def _alert(key: str) -> dict[str, Any]:
    labels = {"alertname": "FlagErrorRate", "flag": key, "environment": ENVIRONMENT}
    return {"version": "4", "status": "firing", "receiver": "flagstream", "groupKey": key,
            "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                        "startsAt": datetime.now(UTC).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": uuid.uuid4().hex[:16]}]}


async def _prepare_flags(client: httpx.AsyncClient, keys: list[str]) -> dict[str, int]:
    """Each flag: created, configured (opted in, off), enabled. Returns the enabled version."""
    versions: dict[str, int] = {}
    for key in keys:
        assert (await client.post("/api/v1/flags", json={"key": key})).status_code == 201
        put = await client.put(f"/api/v1/flags/{key}/environments/{ENVIRONMENT}", json=_config())
        assert put.status_code == 200, put.text
        enabled = await client.post(f"/api/v1/flags/{key}/environments/{ENVIRONMENT}/enable?wait=projected",
                                    json={})
        assert enabled.status_code == 200, enabled.text
        versions[key] = enabled.json()["version"]
    return versions


async def _run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from cli.run import _prepare
    from projections.reader import EnvironmentReader
    from runtime.processes import find_free_port

    secret = await _prepare(urls["DATABASE_URL"], urls["KAFKA_BOOTSTRAP_SERVERS"])
    env = {**os.environ, **urls, "FLAGSTREAM_LOG_LEVEL": "warning",
           "FLAGSTREAM_ROLLBACK_DEFAULT_CONFIRMATION_SECONDS": "0"}
    port = find_free_port()
    commands = [
        ["uvicorn", "api.app:create_app", "--factory", "--port", str(port), "--no-access-log",
         "--log-level", "warning"],
        ["workers.relay"], ["workers.projector"], ["workers.rollback"],
    ]
    children = [await asyncio.create_subprocess_exec(sys.executable, "-m", *c, env=env) for c in commands]
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(f"{base}/healthz")
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {secret}"},
                                     timeout=30) as client:
            run = uuid.uuid4().hex[:6]
            warm_up = f"rb-bench-{run}-warm-up"
            keys = [f"rb-bench-{run}-{i:04d}" for i in range(args.alerts)]
            bad_versions = await _prepare_flags(client, [warm_up, *keys])
            reader = EnvironmentReader(urls["REDIS_URL"], ENVIRONMENT)
            await reader.start()
            # The worker's first consumer-group join takes seconds: one alert first, not measured.
            assert (await client.post("/api/v1/alerts/alertmanager", json=_alert(warm_up))).status_code == 202
            ready_by = time.monotonic() + 120
            while (reader.version_of(warm_up) or 0) <= bad_versions[warm_up]:
                assert time.monotonic() < ready_by, "the rollback worker did not act on the warm-up alert"
                await asyncio.sleep(0.05)  # polling the reader, bounded
            accepted: dict[str, float] = {}
            visible: dict[str, float] = {}
            queue = list(keys)

            async def post_alerts() -> None:
                """One alert in flight per poster: post, then wait for its rollback in the reader."""
                while queue:
                    key = queue.pop(0)
                    response = await client.post("/api/v1/alerts/alertmanager", json=_alert(key))
                    assert response.status_code == 202, response.text
                    accepted[key] = time.perf_counter()
                    if await reader.wait_for_version(key, bad_versions[key] + 1, 60.0):
                        visible[key] = time.perf_counter()

            started = time.perf_counter()
            await asyncio.gather(*(post_alerts() for _ in range(args.concurrency)))
            elapsed = time.perf_counter() - started
            await reader.stop()
        latencies = [visible[k] - accepted[k] for k in keys if k in visible and k in accepted]
        print(f"rollbacks visible: {len(latencies)} of {len(keys)} alerts in {elapsed:.1f} s "
              f"({len(latencies) / elapsed:.0f} rollbacks/s, concurrency {args.concurrency})")
        if latencies:
            p50 = _percentile(latencies, 0.5) * 1e3
            print(f"alert 2xx -> rollback visible in a reader: p50 {p50:.0f} ms, "
                  f"p99 {_percentile(latencies, 0.99) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms, "
                  f"mean {statistics.fmean(latencies) * 1e3:.0f} ms (target p99 < 1000 ms)")
    finally:
        for child in children:
            child.terminate()
        await asyncio.wait_for(asyncio.gather(*(child.wait() for child in children)), 30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    from runtime.devstack import Stack

    with tempfile.TemporaryDirectory(prefix="flagstream-bench-") as folder, Stack.start(
        Path(folder), durable=True, database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"), kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
    ) as stack:
        asyncio.run(_run(args, stack.environment()))


if __name__ == "__main__":
    main()
