"""``python -m workers.rollback`` as a process: acts on an alert from Kafka, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

import workers.rollback
from core.alerts import MetricAlertFiredPayload, alert_stream
from core.commands import CreateFlag, EnableFlag
from core.envelope import GENESIS_HASH, seal
from core.events import EventType, to_draft
from core.model import AutoRollback, EnvironmentConfig, Flag, Serve
from events.commands.service import CommandMeta, CommandService
from events.kafka.adapter import (
    KafkaPublisher,
    ensure_topics,
    make_consumer,
    make_producer,
    metric_alerts_spec,
)
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from runtime.settings import load_settings
from tests.integration.rollback.support import wait_for

pytestmark = pytest.mark.integration


async def test_rollback_worker_process__alert_in_topic__rolled_back_then_sigterm_exits_zero(
    fresh_database: str, kafka_bootstrap: str, unique_topic: str
) -> None:
    await apply_migrations(fresh_database)
    await ensure_topics(kafka_bootstrap, [metric_alerts_spec(unique_topic, partitions=1)])
    pool = await create_pool(fresh_database, min_size=1, max_size=2)
    store = PostgresEventStore(pool)
    commands = CommandService(store, clock=lambda: datetime.now(UTC), new_id=uuid.uuid4)
    config = EnvironmentConfig(
        off_variation="off", default=Serve(variation="on"), auto_rollback=AutoRollback(enabled=True)
    )
    meta = CommandMeta(actor="tester")
    await commands.execute(
        CreateFlag(flag_key="proc", flag=Flag(key="proc", environments={"prod": config})), meta
    )
    await commands.execute(EnableFlag(flag_key="proc", environment="prod"), meta)
    alert = MetricAlertFiredPayload(
        fingerprint="proc-1",
        source="alertmanager",
        starts_at=datetime.now(UTC),
        labels={"alertname": "X", "flag": "proc", "environment": "prod"},
    )
    event = seal(
        to_draft(alert, environment="prod"),
        event_id=uuid.uuid4(),
        flag_key=alert_stream("proc-1"),
        version=1,
        prev_hash=GENESIS_HASH,
        occurred_at=datetime.now(UTC),
        actor="tester",
    )
    await store.append([event])
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FLAGSTREAM_METRIC_ALERTS_TOPIC": unique_topic,
        "FLAGSTREAM_ROLLBACK_GROUP": unique_topic,
        "FLAGSTREAM_ROLLBACK_DEFAULT_CONFIRMATION_SECONDS": "0",
        "FLAGSTREAM_LOG_JSON": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.rollback",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    producer = make_producer(kafka_bootstrap, linger_ms=0)
    try:
        await producer.start()
        await KafkaPublisher(producer, "unused", metric_alerts_topic=unique_topic).publish([event])

        async def rolled_back() -> bool:
            return (await store.read_stream("proc"))[-1].type == EventType.FLAG_ROLLED_BACK.value

        await wait_for(rolled_back, within=60.0, what="the worker process rolled the flag back")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await producer.stop()
        await pool.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.returncode not in (0, None) and process.stderr is not None:
            print((await process.stderr.read()).decode(errors="replace")[-5000:])


async def test_run_rollback_worker__consumer_cannot_start__consumer_closed_all_the_same(
    fresh_database: str, kafka_bootstrap: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer whose start fails (here: its broker is unreachable) is closed, not left to the GC."""
    made: list[AIOKafkaConsumer] = []

    def unreachable_consumer(bootstrap: str, topic: str, **kwargs: Any) -> AIOKafkaConsumer:
        made.append(make_consumer(f"127.0.0.1:{_closed_port()}", topic, **kwargs))
        return made[-1]

    monkeypatch.setattr(workers.rollback, "make_consumer", unreachable_consumer)
    settings = load_settings(
        database_url=fresh_database, kafka_bootstrap_servers=kafka_bootstrap, metric_alerts_topic=unique_topic
    )
    failed = False
    try:
        await asyncio.wait_for(workers.rollback.run_rollback_worker(settings, asyncio.Event()), 60)
    except KafkaConnectionError:
        failed = True
    assert failed and len(made) == 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made.clear()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
