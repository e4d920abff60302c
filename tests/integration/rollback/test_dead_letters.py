"""The rollback worker parks what it cannot do (stage ``rollback``), on real Postgres and Kafka:
a permanent error or retries run out park the alert before its offset is committed; operators
list it (API and CLI) and redrive it, and the worker runs the rollback decision for that alert again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import TopicPartition

from core.alerts import MetricAlertFiredPayload, alert_stream
from core.commands import Command, CreateFlag, EnableFlag
from core.envelope import GENESIS_HASH, Event, seal
from core.errors import InvalidCommand
from core.events import EventType, to_draft
from core.model import AutoRollback, EnvironmentConfig, Flag, Serve
from events.commands.service import CommandMeta, CommandOutcome, CommandService
from events.deadletters import DeadLetter, DeadLetterFilter, DeadLetterStore
from events.deadletters.operations import (
    DeadLetterOperations,
    OperationsJournal,
    PostgresStreamHead,
    RedriverRegistry,
)
from events.errors import StoreUnavailable
from events.kafka.adapter import (
    KafkaPublisher,
    ensure_topics,
    make_consumer,
    make_producer,
    metric_alerts_spec,
)
from events.rollback.alerts import AlertQueries
from events.rollback.letters import RollbackLetters
from events.rollback.worker import RollbackPolicy, RollbackWorker
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from tests.integration.rollback.support import wait_for
from workers.rollback import AlertConsumer

pytestmark = pytest.mark.integration


def _now() -> datetime:
    return datetime.now(UTC)


class BreakableCommands:
    """The real command path, or — while ``failure`` is set — that error instead of any command."""

    def __init__(self, inner: CommandService) -> None:
        self.inner = inner
        self.failure: Exception | None = None
        self.failed = 0

    async def execute(self, command: Command, meta: CommandMeta) -> CommandOutcome:
        if self.failure is not None:
            self.failed += 1
            raise self.failure
        return await self.inner.execute(command, meta)


@dataclass
class Rig:
    pool: asyncpg.Pool
    store: PostgresEventStore
    commands: BreakableCommands
    dlq: DeadLetterStore
    bootstrap: str
    topic: str

    async def alert_for(self, flag: str) -> Event:
        """An opted-in flag just enabled in ``prod``, and a firing alert naming it, in the topic."""
        meta = CommandMeta(actor="tester")
        config = EnvironmentConfig(
            off_variation="off", default=Serve(variation="on"), auto_rollback=AutoRollback(enabled=True)
        )
        await self.commands.inner.execute(
            CreateFlag(flag_key=flag, flag=Flag(key=flag, environments={"prod": config})), meta
        )
        await self.commands.inner.execute(EnableFlag(flag_key=flag, environment="prod"), meta)
        fingerprint = f"{flag}-{uuid.uuid4().hex[:6]}"
        alert = MetricAlertFiredPayload(
            fingerprint=fingerprint,
            source="alertmanager",
            starts_at=_now(),
            labels={"alertname": "X", "flag": flag, "environment": "prod"},
        )
        event = seal(
            to_draft(alert, environment="prod"),
            event_id=uuid.uuid4(),
            flag_key=alert_stream(fingerprint),
            version=1,
            prev_hash=GENESIS_HASH,
            occurred_at=_now(),
            actor="tester",
        )
        await self.store.append([event])
        producer = make_producer(self.bootstrap, linger_ms=0)
        try:
            await producer.start()
            await KafkaPublisher(producer, "unused", metric_alerts_topic=self.topic).publish([event])
        finally:
            await producer.stop()
        return event

    async def letters(self) -> list[DeadLetter]:
        return (await self.dlq.list(DeadLetterFilter(stage="rollback", status=None), limit=50)).items

    async def last_type(self, flag: str) -> str:
        return (await self.store.read_stream(flag))[-1].type


@pytest.fixture
async def rig(fresh_database: str, kafka_bootstrap: str, unique_topic: str) -> AsyncIterator[Rig]:
    await apply_migrations(fresh_database)
    await ensure_topics(kafka_bootstrap, [metric_alerts_spec(unique_topic, partitions=1)])
    pool = await create_pool(fresh_database, min_size=1, max_size=6)
    store = PostgresEventStore(pool)
    commands = BreakableCommands(CommandService(store, clock=_now, new_id=uuid.uuid4))
    try:
        yield Rig(pool, store, commands, DeadLetterStore(pool), kafka_bootstrap, unique_topic)
    finally:
        await pool.close()


@pytest.fixture
async def consumer(rig: Rig) -> AsyncIterator[tuple[AlertConsumer, TopicPartition, object]]:
    worker = RollbackWorker(
        rig.store,
        rig.commands,
        AlertQueries(rig.pool),
        RollbackPolicy(lookback=timedelta(minutes=30), default_confirmation_seconds=0.0),
        clock=_now,
    )
    kafka = make_consumer(
        rig.bootstrap,
        rig.topic,
        group_id=f"rb-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=2_000,
        heartbeat_interval_ms=400,
    )
    alerts = AlertConsumer(
        worker,
        kafka,
        poll_ms=50,
        letters=RollbackLetters(rig.dlq),
        retries=3,
        retry_base_seconds=0.01,
        release_interval=0.1,
    )
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await kafka.start()  # inside the try: a consumer whose start fails is closed all the same
        task = asyncio.create_task(alerts.run(stop))
        yield alerts, TopicPartition(rig.topic, 0), kafka
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
        await kafka.stop()


async def _parked(rig: Rig) -> DeadLetter:
    async def parked() -> DeadLetter | None:
        letters = [lt for lt in await rig.letters() if lt.status == "parked"]
        return letters[0] if letters else None

    return await wait_for(parked, within=20.0, what="a rollback dead letter")


async def test_permanent_error__alert_parked_then_offset_committed(
    rig: Rig, consumer: tuple[AlertConsumer, TopicPartition, object]
) -> None:
    _, tp, kafka = consumer
    rig.commands.failure = InvalidCommand("the compensating command is refused")
    alert = await rig.alert_for("perm")

    letter = await _parked(rig)

    assert (letter.stage, letter.flag_key, letter.version) == ("rollback", alert.flag_key, 1)
    assert letter.event_id == alert.event_id and letter.event_body == alert.to_json()
    assert (letter.error_class, letter.attempts, rig.commands.failed) == ("InvalidCommand", 1, 1)
    assert letter.kafka is not None and (letter.kafka.topic, letter.kafka.offset) == (rig.topic, 0)

    async def committed() -> bool:
        return await kafka.committed(tp) == 1  # type: ignore[attr-defined]

    await wait_for(committed, within=10.0, what="the parked alert's offset committed")
    assert await rig.last_type("perm") == EventType.FLAG_ENABLED.value


async def test_retriable_errors_past_the_retries__alert_parked_with_its_attempts(
    rig: Rig, consumer: tuple[AlertConsumer, TopicPartition, object]
) -> None:
    rig.commands.failure = StoreUnavailable("Postgres unreachable (injected)")
    await rig.alert_for("flaky")

    letter = await _parked(rig)

    assert (letter.error_class, letter.attempts, rig.commands.failed) == ("StoreUnavailable", 3, 3)


async def test_redrive__fixed__decision_runs_again_flag_rolled_back_letter_reprocessed(
    rig: Rig, consumer: tuple[AlertConsumer, TopicPartition, object]
) -> None:
    rig.commands.failure = InvalidCommand("refused")
    alert = await rig.alert_for("fixme")
    letter = await _parked(rig)
    rig.commands.failure = None
    journal = OperationsJournal(rig.store, PostgresStreamHead(rig.pool), clock=_now)
    operations = DeadLetterOperations(rig.dlq, journal, RedriverRegistry())

    result = await operations.redrive(letter.id, actor="ops-alice", reason="command path fixed")

    async def reprocessed() -> DeadLetter | None:
        current = await rig.dlq.get(letter.id)
        return current if current.reprocessed_at is not None else None

    done = await wait_for(reprocessed, within=20.0, what="the redriven rollback letter processed")
    assert (done.status, done.resolved_by, result.event is not None) == ("redriven", "ops-alice", True)
    last = (await rig.store.read_stream("fixme"))[-1]
    assert last.type == EventType.FLAG_ROLLED_BACK.value and last.causation_id == str(alert.event_id)
    assert await rig.dlq.blocked_flags("rollback") == set()


async def test_redrive__still_failing__parked_again_with_one_more_attempt(
    rig: Rig, consumer: tuple[AlertConsumer, TopicPartition, object]
) -> None:
    rig.commands.failure = InvalidCommand("refused")
    await rig.alert_for("stubborn")
    letter = await _parked(rig)

    await rig.dlq.mark_redriven(letter.id, "ops-alice", "try again")

    async def parked_again() -> DeadLetter | None:
        again = [lt for lt in await rig.letters() if lt.status == "parked" and lt.id != letter.id]
        return again[0] if again else None

    again = await wait_for(parked_again, within=20.0, what="the letter parked again")
    assert (again.event_id, again.attempts) == (letter.event_id, 2)
    assert (await rig.dlq.get(letter.id)).reprocessed_at is not None
