"""The event spine under load: commands/s, command latency, and command → reader propagation.

    python benchmarks/spine.py [--seconds 20] [--concurrency 32] [--flags 200]

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), runs the API
(``python -m api.serve``, one process), the relay and the projector as separate processes exactly as
``flagstream run`` does, then drives ``PUT .../environments/production`` commands over HTTP from
``--concurrency`` clients spread over ``--flags`` flags. A reader in this process (the same
``EnvironmentReader`` the API uses) records when each change becomes visible: the propagation
delay is measured from the command's 2xx to the reader showing that version.

Targets (issue 3): >= 1,000 commands/s, command p99 < 25 ms, propagation p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling the API's readiness, bounded
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _config(weight: int) -> dict[str, Any]:
    return {"enabled": True, "off_variation": "off",
            "rules": [{"id": "na", "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                       "serve": {"rollout": [{"variation": "on", "weight": weight},
                                             {"variation": "off", "weight": 100 - weight}]}}],
            "default": {"variation": "off"}}


async def _run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from cli.run import _prepare
    from projections.connection import make_redis
    from projections.reader import EnvironmentReader
    from runtime.processes import find_free_port

    secret = await _prepare(urls["DATABASE_URL"], urls["KAFKA_BOOTSTRAP_SERVERS"])
    env = {**os.environ, **urls, "FLAGSTREAM_LOG_LEVEL": "warning"}
    port = find_free_port()
    children = [
        subprocess.Popen([sys.executable, "-m", "api.serve", "--port", str(port)], env=env),
        subprocess.Popen([sys.executable, "-m", "workers.relay"], env=env),
        subprocess.Popen([sys.executable, "-m", "workers.projector"], env=env),
    ]
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {secret}"}
    redis = make_redis(urls["REDIS_URL"])
    try:
        await _wait_http(f"{base}/healthz")
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
            flags = [f"bench-{i:04d}" for i in range(args.flags)]
            for key in flags:
                response = await client.post("/api/v1/flags", json={"key": key})
                assert response.status_code in (201, 409), response.text
            reader = EnvironmentReader(redis, "production")
            await reader.start()
            visible_at: dict[tuple[str, int], float] = {}
            acked_at: dict[tuple[str, int], float] = {}
            latencies: list[float] = []
            errors = 0
            stop_at = time.monotonic() + args.seconds

            async def worker(n: int) -> None:
                nonlocal errors
                i = n
                while time.monotonic() < stop_at:
                    key = flags[i % len(flags)]
                    i += args.concurrency
                    started = time.perf_counter()
                    response = await client.put(f"/api/v1/flags/{key}/environments/production",
                                                json=_config(i % 101))
                    done = time.perf_counter()
                    if response.status_code != 200:
                        errors += 1
                        continue
                    latencies.append(done - started)
                    acked_at[(key, response.json()["version"])] = done

            last_seen = {key: reader.version_of(key) or 0 for key in flags}

            async def watch() -> None:
                # A version counts as visible when the reader first shows it *or a later one*.
                while time.monotonic() < stop_at + 5:
                    now = time.perf_counter()
                    for key in flags:
                        version = reader.version_of(key) or 0
                        for seen in range(last_seen[key] + 1, version + 1):
                            visible_at[(key, seen)] = now
                        last_seen[key] = max(last_seen[key], version)
                    await asyncio.sleep(0.0005)  # sampling the reader's snapshot

            noticed_at: dict[tuple[str, int], float] = {}

            async def listen() -> None:
                pubsub = redis.pubsub()
                await pubsub.subscribe("fs:env:production:changes")
                while time.monotonic() < stop_at + 5:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if message is not None:
                        notice = json.loads(message["data"])
                        noticed_at.setdefault((notice["flag_key"], int(notice["version"])), time.perf_counter())
                await pubsub.aclose()

            watcher = asyncio.create_task(watch())
            listener = asyncio.create_task(listen())
            started = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(args.concurrency)))
            elapsed = time.perf_counter() - started
            await watcher
            await listener
            await reader.stop()
        propagation = [max(0.0, visible_at[k] - t) for k, t in acked_at.items() if k in visible_at]
        unseen = sum(1 for k in acked_at if k not in visible_at)
        to_notice = [max(0.0, noticed_at[k] - t) for k, t in acked_at.items() if k in noticed_at]
        notice_to_reader = [max(0.0, visible_at[k] - noticed_at[k]) for k in acked_at if k in noticed_at
                            and k in visible_at]
        print(f"commands: {len(latencies)} ok, {errors} errors in {elapsed:.1f}s "
              f"-> {len(latencies) / elapsed:,.0f} commands/s (concurrency {args.concurrency}, {args.flags} flags)")
        print(f"command latency: p50 {_percentile(latencies, 0.5) * 1e3:.1f} ms, "
              f"p99 {_percentile(latencies, 0.99) * 1e3:.1f} ms, mean {statistics.fmean(latencies) * 1e3:.1f} ms")
        print(f"propagation 2xx -> reader: p50 {_percentile(propagation, 0.5) * 1e3:.1f} ms, "
              f"p99 {_percentile(propagation, 0.99) * 1e3:.1f} ms over {len(propagation)} samples "
              f"(never visible: {unseen})")
        await _report_relay_lag(urls["KAFKA_BOOTSTRAP_SERVERS"], len(acked_at))
        print(f"2xx -> projector's change notice: p50 {_percentile(to_notice, 0.5) * 1e3:.1f} ms, "
              f"p99 {_percentile(to_notice, 0.99) * 1e3:.1f} ms; notice -> reader: "
              f"p50 {_percentile(notice_to_reader, 0.5) * 1e3:.1f} ms, "
              f"p99 {_percentile(notice_to_reader, 0.99) * 1e3:.1f} ms")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=20)
        await redis.aclose()


async def _report_relay_lag(bootstrap: str, at_least: int) -> None:
    """Split propagation: append (occurred_at) -> Kafka (record timestamp) is the relay's share."""
    from aiokafka import AIOKafkaConsumer

    from core.envelope import Event

    consumer = AIOKafkaConsumer("flagstream.flag-events", bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=25)
    await consumer.start()
    lags: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while len(lags) < at_least and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for record in records:
                    event = Event.from_json(record.value)
                    lags.append(record.timestamp / 1000 - event.occurred_at.timestamp())
    finally:
        await consumer.stop()
    print(f"relay share (append -> Kafka timestamp): p50 {_percentile(lags, 0.5) * 1e3:.1f} ms, "
          f"p99 {_percentile(lags, 0.99) * 1e3:.1f} ms over {len(lags)} events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flags", type=int, default=200)
    args = parser.parse_args()
    from runtime.devstack import Stack

    with tempfile.TemporaryDirectory(prefix="flagstream-bench-") as folder, Stack.start(
        Path(folder), durable=True, database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"), kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
    ) as stack:
        asyncio.run(_run(args, stack.environment()))


if __name__ == "__main__":
    main()
