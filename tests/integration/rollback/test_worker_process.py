"""``python -m workers.rollback`` as a process: acts on an alert from Kafka, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime

import pytest

from core.alerts import MetricAlertFiredPayload, alert_stream
from core.commands import CreateFlag, EnableFlag
from core.envelope import GENESIS_HASH, seal
from core.events import EventType, to_draft
from core.model import AutoRollback, EnvironmentConfig, Flag, Serve
from events.commands.service import CommandMeta, CommandService
from events.kafka.adapter import KafkaPublisher, ensure_topics, make_producer, metric_alerts_spec
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
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
    await producer.start()
    try:
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
