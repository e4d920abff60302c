"""``python -m workers.relay`` as a process: publishes what is appended, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg

from events.db import create_pool
from events.store import PostgresEventStore
from tests.integration.events.kafka_log import read_topic
from tests.unit.events.factories import make_chain


async def test_relay_worker__appended_events__published_then_sigterm_exits_zero(
    fresh_database: str, kafka_bootstrap: str, unique_topic: str
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLAGSTREAM_FLAG_EVENTS_TOPIC": unique_topic,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.relay", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        pool = await _pool_once_migrated(fresh_database)
        try:
            events = make_chain("worker-flag", 3)
            await PostgresEventStore(pool).append(events)
        finally:
            await pool.close()
        records = await read_topic(kafka_bootstrap, unique_topic, {("worker-flag", v) for v in (1, 2, 3)})
        assert [r.version for r in records] == [1, 2, 3]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stderr is not None and process.returncode != 0:
            print((await process.stderr.read()).decode(errors="replace"))


async def _pool_once_migrated(url: str) -> asyncpg.Pool:
    """The worker applies the migrations; wait (bounded) until the events table exists."""
    pool = await create_pool(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await pool.fetchval("SELECT to_regclass('events') IS NULL"):
        if loop.time() > deadline:
            raise AssertionError("the relay worker never migrated the database")
        await asyncio.sleep(0.05)
    return pool
