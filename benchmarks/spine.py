"""The event spine under load: commands/s, command latency, and command → reader propagation.

    python benchmarks/spine.py [--seconds 20] [--concurrency 32] [--flags 200]

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), runs the API
(``python -m api.serve``, one process), the relay and the projector as separate processes exactly
as ``flagstream run`` does, then drives ``PUT .../environments/production`` commands over HTTP from
``--concurrency`` clients spread over ``--flags`` flags. A reader in this process (the same
``EnvironmentReader`` the API uses) records when each change becomes visible: propagation is
measured from the command's 2xx to the reader showing that version (or a later one). It is split
into the relay's share (append → Kafka record timestamp), the projector's (2xx → its change
notice on Redis pub/sub) and the reader's (notice → visible).

Targets (issue 3): >= 1,000 commands/s, command p99 < 25 ms, propagation p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.envelope import Event
from projections.connection import make_redis
from projections.reader import EnvironmentReader

_Key = tuple[str, int]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> str:
    return f"p50 {_percentile(values, 0.5) * 1e3:.1f} ms, p99 {_percentile(values, 0.99) * 1e3:.1f} ms"


def _config(weight: int) -> dict[str, Any]:
    return {
        "enabled": True,
        "off_variation": "off",
        "rules": [
            {
                "id": "na",
                "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                "serve": {
                    "rollout": [
                        {"variation": "on", "weight": weight},
                        {"variation": "off", "weight": 100 - weight},
                    ]
                },
            }
        ],
        "default": {"variation": "off"},
    }


async def _wait_http(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling the API's liveness, bounded
    raise TimeoutError(f"{url} did not answer within {within}s")


class SpineRun:
    """One measured run: load from ``concurrency`` clients, a reader watching, a notice listener."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        reader: EnvironmentReader,
        redis: Any,
        flags: list[str],
        concurrency: int,
        seconds: float,
    ) -> None:
        self.client, self.reader, self.redis = client, reader, redis
        self.flags, self.concurrency = flags, concurrency
        self.stop_at = time.monotonic() + seconds
        self.acked_at: dict[_Key, float] = {}
        self.visible_at: dict[_Key, float] = {}
        self.noticed_at: dict[_Key, float] = {}
        self.latencies: list[float] = []
        self.errors = 0

    async def load(self, n: int) -> None:
        i = n
        while time.monotonic() < self.stop_at:
            key = self.flags[i % len(self.flags)]
            i += self.concurrency
            started = time.perf_counter()
            response = await self.client.put(
                f"/api/v1/flags/{key}/environments/production", json=_config(i % 101)
            )
            done = time.perf_counter()
            if response.status_code != 200:
                self.errors += 1
                continue
            self.latencies.append(done - started)
            body = response.json()
            if body["changed"]:  # a no-op (same config again) answers with a version already visible
                self.acked_at[(key, body["version"])] = done

    async def watch(self) -> None:
        """A version counts as visible when the reader first shows it *or a later one*."""
        last_seen = {key: self.reader.version_of(key) or 0 for key in self.flags}
        while time.monotonic() < self.stop_at + 5:
            now = time.perf_counter()
            for key in self.flags:
                version = self.reader.version_of(key) or 0
                for seen in range(last_seen[key] + 1, version + 1):
                    self.visible_at[(key, seen)] = now
                last_seen[key] = max(last_seen[key], version)
            await asyncio.sleep(0.0005)  # sampling the reader's snapshot

    async def listen(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe("fs:env:production:changes")
        while time.monotonic() < self.stop_at + 5:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                notice = json.loads(message["data"])
                self.noticed_at.setdefault((notice["flag_key"], int(notice["version"])), time.perf_counter())
        await pubsub.aclose()

    async def run(self) -> float:
        background = [asyncio.create_task(self.watch()), asyncio.create_task(self.listen())]
        started = time.perf_counter()
        await asyncio.gather(*(self.load(n) for n in range(self.concurrency)))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*background)
        return elapsed

    def report(self, elapsed: float) -> None:
        acked = self.acked_at
        propagation = [max(0.0, self.visible_at[k] - t) for k, t in acked.items() if k in self.visible_at]
        to_notice = [max(0.0, self.noticed_at[k] - t) for k, t in acked.items() if k in self.noticed_at]
        to_reader = [
            max(0.0, self.visible_at[k] - self.noticed_at[k])
            for k in acked
            if k in self.noticed_at and k in self.visible_at
        ]
        unseen = sum(1 for k in acked if k not in self.visible_at)
        print(
            f"commands: {len(self.latencies)} ok, {self.errors} errors in {elapsed:.1f}s "
            f"-> {len(self.latencies) / elapsed:,.0f} commands/s "
            f"(concurrency {self.concurrency}, {len(self.flags)} flags)"
        )
        print(f"command latency: {_ms(self.latencies)}, mean {statistics.fmean(self.latencies) * 1e3:.1f} ms")
        print(
            f"propagation 2xx -> reader: {_ms(propagation)} over {len(propagation)} samples "
            f"(never visible: {unseen})"
        )
        print(f"  2xx -> projector's change notice: {_ms(to_notice)}; notice -> reader: {_ms(to_reader)}")


async def _warm_up(client: httpx.AsyncClient, reader: EnvironmentReader, flags: list[str]) -> None:
    """Configure every flag once and wait until the reader shows them all: the measurement starts with
    the projector's consumer group joined (a join takes seconds on tansu) and every path warm."""
    for key in flags:
        response = await client.put(f"/api/v1/flags/{key}/environments/production", json=_config(50))
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while any(reader.version_of(key) is None for key in flags):
        if time.monotonic() > deadline:
            raise TimeoutError("the reader did not show every flag within 60 s")
        await asyncio.sleep(0.05)  # polling the reader's snapshot, bounded


async def _report_relay_lag(bootstrap: str, at_least: int) -> None:
    """The relay's share: append (occurred_at) -> Kafka (record timestamp)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "flagstream.flag-events",
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=25,
    )
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
    print(f"  relay share (append -> Kafka timestamp): {_ms(lags)} over {len(lags)} events")


async def _start_platform(urls: dict[str, str], port: int) -> list[asyncio.subprocess.Process]:
    env = {**os.environ, **urls, "FLAGSTREAM_LOG_LEVEL": "warning"}
    commands = (
        ["-m", "api.serve", "--port", str(port)],
        ["-m", "workers.relay"],
        ["-m", "workers.projector"],
    )
    return [await asyncio.create_subprocess_exec(sys.executable, *argv, env=env) for argv in commands]


async def _run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from cli.run import _prepare
    from runtime.processes import find_free_port

    secret = await _prepare(urls["DATABASE_URL"], urls["KAFKA_BOOTSTRAP_SERVERS"])
    port = find_free_port()
    children = await _start_platform(urls, port)
    redis = make_redis(urls["REDIS_URL"])
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(f"{base}/healthz")
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {secret}"}, limits=limits, timeout=30
        ) as client:
            flags = [f"bench-{i:04d}" for i in range(args.flags)]
            for key in flags:
                response = await client.post("/api/v1/flags", json={"key": key})
                assert response.status_code in (201, 409), response.text
            reader = EnvironmentReader(redis, "production")
            await reader.start()
            await _warm_up(client, reader, flags)
            run = SpineRun(client, reader, redis, flags, args.concurrency, args.seconds)
            run.report(await run.run())
            await reader.stop()
        await _report_relay_lag(urls["KAFKA_BOOTSTRAP_SERVERS"], len(run.acked_at))
    finally:
        for child in children:
            child.terminate()
        await asyncio.gather(
            *(asyncio.wait_for(child.wait(), 20) for child in children), return_exceptions=True
        )
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flags", type=int, default=200)
    args = parser.parse_args()
    from runtime.devstack import Stack

    with (
        tempfile.TemporaryDirectory(prefix="flagstream-bench-") as folder,
        Stack.start(
            Path(folder),
            durable=True,
            database_url=os.environ.get("DATABASE_URL"),
            redis_url=os.environ.get("REDIS_URL"),
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        ) as stack,
    ):
        asyncio.run(_run(args, stack.environment()))


if __name__ == "__main__":
    main()
