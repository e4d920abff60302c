"""``python -m workers.relay`` as a process: publishes what is appended, reports its status and
metrics, exits 0 on SIGTERM within its grace; a SIGKILL mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from events.relay.status import read_relay_status
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from runtime.processes import find_free_port
from tests.integration.events.kafka_log import read_topic
from tests.integration.events.relay_rig import eventually, first_versions
from tests.unit.events.factories import make_chain


def _env(database_url: str, bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FLAGSTREAM_FLAG_EVENTS_TOPIC": topic,
        "FLAGSTREAM_METRIC_ALERTS_TOPIC": f"{topic}-alerts",
        "FLAGSTREAM_LOG_JSON": "false",
        **extra,
    }


@asynccontextmanager
async def relay_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.relay", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stderr is not None and process.returncode not in (0, -signal.SIGKILL):
            print((await process.stderr.read()).decode(errors="replace")[-5000:])


async def test_relay_worker__appended_events__published_status_and_metrics_then_sigterm_exits_zero(
    fresh_database: str, kafka_bootstrap: str, unique_topic: str
) -> None:
    metrics_port = find_free_port()
    env = _env(fresh_database, kafka_bootstrap, unique_topic, FLAGSTREAM_METRICS_PORT=str(metrics_port))
    async with relay_process(env) as process:
        pool = await _pool_once_migrated(fresh_database)
        try:
            await PostgresEventStore(pool).append(make_chain("worker-flag", 3))
            await PostgresEventStore(pool).append(make_chain("alert:fp-9", 1))
            records = await read_topic(kafka_bootstrap, unique_topic, {("worker-flag", v) for v in (1, 2, 3)})
            assert [r.version for r in records] == [1, 2, 3]
            await read_topic(kafka_bootstrap, f"{unique_topic}-alerts", {("alert:fp-9", 1)})
            await eventually(lambda: _published_status(pool), what="relay_status with a publication")
        finally:
            await pool.close()
        text = await asyncio.to_thread(_scrape, metrics_port)
        assert 'flagstream_build_info{role="relay"' in text
        assert 'flagstream_circuit_breaker_state{breaker="kafka-relay"} 0.0' in text

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_relay_worker__kafka_unreachable__sigterm_still_exits_zero_within_grace(
    fresh_database: str, unique_topic: str
) -> None:
    dead_bootstrap = f"127.0.0.1:{find_free_port()}"
    env = _env(fresh_database, dead_bootstrap, unique_topic, FLAGSTREAM_SHUTDOWN_GRACE_SECONDS="3")
    async with relay_process(env) as process:
        pool = await _pool_once_migrated(fresh_database)
        await pool.close()
        started = asyncio.get_running_loop().time()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert asyncio.get_running_loop().time() - started < 5


async def test_relay_worker__sigkilled_mid_stream__restart_publishes_everything_in_order(
    fresh_database: str, kafka_bootstrap: str, unique_topic: str
) -> None:
    await apply_migrations(fresh_database)
    pool = await create_pool(fresh_database)
    flags = [f"k{i}" for i in range(20)]
    try:
        store = PostgresEventStore(pool)
        for flag in flags:
            await store.append(make_chain(flag, 150))
        env = _env(fresh_database, kafka_bootstrap, unique_topic, FLAGSTREAM_RELAY_BATCH_SIZE="40")
        async with relay_process(env) as first:
            await eventually(lambda: _checkpoint_moved(pool), what="the first relay published something")
            first.kill()
            await first.wait()
        killed_at = await _checkpoint_seq(pool)
        assert 0 < killed_at < 3000, "the kill did not land mid-stream"

        async with relay_process(env) as second:
            expected = {(flag, v) for flag in flags for v in range(1, 151)}
            records = await read_topic(kafka_bootstrap, unique_topic, expected, within=90)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 20) == 0
        for flag in flags:
            assert first_versions(records, flag) == list(range(1, 151))
    finally:
        await pool.close()


async def _published_status(pool: asyncpg.Pool) -> bool:
    statuses = await read_relay_status(pool)
    return bool(statuses) and statuses[0].last_published_at is not None and not statuses[0].degraded


async def _checkpoint_seq(pool: asyncpg.Pool) -> int:
    seq = await pool.fetchval("SELECT last_seq FROM relay_checkpoints WHERE name = 'flag-events'")
    return int(seq or 0)


async def _checkpoint_moved(pool: asyncpg.Pool) -> bool:
    return await _checkpoint_seq(pool) > 0


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def _pool_once_migrated(url: str) -> asyncpg.Pool:
    """The worker applies the migrations; wait (bounded) until the relay's tables exist."""
    pool = await create_pool(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await pool.fetchval("SELECT to_regclass('relay_status') IS NULL"):
        if loop.time() > deadline:
            raise AssertionError("the relay worker never migrated the database")
        await asyncio.sleep(0.05)
    return pool
