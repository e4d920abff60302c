"""Building real event streams (core.decide + seal) and writing them to Kafka and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.commands import CreateFlag, FlagCommand, RollBackEnvironment, SetRollout, SetRules
from core.decide import decide
from core.envelope import Event, seal
from core.evolve import evolve
from core.model import Clause, EnvironmentConfig, Flag, Operator, Rule, Serve, Variation, WeightedVariation
from core.state import Catalog, FlagState
from events.store.db import apply_migrations, connect

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def checkout_flag(key: str = "new-checkout") -> Flag:
    on_off = (Variation(key="on", value=True), Variation(key="off", value=False))
    config = EnvironmentConfig(enabled=True, off_variation="off", default=Serve(variation="off"))
    return Flag(key=key, variations=on_off, environments={"production": config, "staging": config})


def apply_commands(
    key: str,
    commands: Sequence[FlagCommand],
    *,
    start: datetime = T0,
    step: timedelta = timedelta(hours=1),
    actor: str = "alice",
) -> tuple[list[Event], list[FlagState]]:
    """Decide and seal each command in turn: the events and the state after each of them."""
    state = FlagState(key=key)
    events: list[Event] = []
    states: list[FlagState] = []
    for index, command in enumerate(commands):
        for draft in decide(state, command, Catalog()):
            event = seal(
                draft,
                event_id=uuid.uuid4(),
                flag_key=key,
                version=state.version + 1,
                prev_hash=state.last_hash,
                occurred_at=start + step * index,
                actor=actor,
                reason=command.reason,
                correlation_id=f"corr-{index}",
                causation_id="alert-1" if isinstance(command, RollBackEnvironment) else None,
            )
            state = evolve(state, event)
            events.append(event)
        states.append(state)
    return events, states


def checkout_story(key: str = "new-checkout") -> list[FlagCommand]:
    """create -> rules change -> rollout change -> rollback (to the state after the rules change)."""
    flag = checkout_flag(key)
    beta = Rule(
        id="beta",
        when=Clause(attribute="plan", op=Operator.IN, values=("beta",)),
        serve=Serve(variation="on"),
    )
    rules_config = flag.environments["production"].model_copy(update={"rules": (beta,)})
    return [
        CreateFlag(flag_key=key, flag=flag, reason="launch"),
        SetRules(flag_key=key, environment="production", rules=(beta,), reason="beta users first"),
        SetRollout(
            flag_key=key,
            environment="production",
            rollout=(
                WeightedVariation(variation="on", weight=50),
                WeightedVariation(variation="off", weight=50),
            ),
            reason="half of everyone",
        ),
        RollBackEnvironment(
            flag_key=key,
            environment="production",
            to_version=2,
            restored_config=rules_config,
            undone_versions=(3,),
            reason="error rate alert",
        ),
    ]


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, events: Iterable[Event | tuple[str, bytes]]) -> None:
    """Write events (or raw ``(key, value)`` records) to the topic, keyed by stream, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for item in events:
            key, value = (item.flag_key, item.to_json().encode()) if isinstance(item, Event) else item
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def store(database_url: str, events: Iterable[Event]) -> None:
    """Append events to a (migrated here) Postgres ``events`` table."""
    await apply_migrations(database_url)
    conn = await connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO events (event_id, flag_key, version, type, environment, occurred_at, actor, hash,"
            " body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (
                    e.event_id,
                    e.flag_key,
                    e.version,
                    e.type,
                    e.environment,
                    e.occurred_at,
                    e.actor,
                    e.hash,
                    e.to_json(),
                )
                for e in events
            ],
        )
    finally:
        await conn.close()
