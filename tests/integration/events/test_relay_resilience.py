"""The relay against a broker that dies and comes back empty (tansu keeps nothing): the breaker
opens without hammering, appends keep succeeding, the status says so, and once the broker is
back everything — also what had been published before — is in the log again, per flag in order.

Runs its own tansu broker (killed and restarted here) next to the session's Postgres: a
``private_stack`` would also start a Redis and a Postgres these tests do not need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from events.kafka.adapter import ensure_topics, flag_events_spec, metric_alerts_spec
from events.kafka.records import log_epoch_of
from events.relay.status import read_relay_status
from events.resilience import BreakerState
from events.store.postgres import PostgresEventStore
from runtime.processes import find_free_port
from runtime.servers import KafkaServer
from tests.integration.events.kafka_log import read_topic
from tests.integration.events.relay_rig import eventually, first_versions, relay_rig
from tests.unit.events.factories import make_chain

TOPICS = [
    flag_events_spec("flagstream.flag-events", partitions=2),
    metric_alerts_spec("flagstream.metric-alerts", partitions=1),
]
FLAG_TOPIC = TOPICS[0].name


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaServer]:
    broker = KafkaServer(tmp_path / "kafka", find_free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(grace_seconds=5)


async def test_relay__broker_killed__breaker_opens_appends_continue_then_all_republished_in_order(
    own_broker: KafkaServer, store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    await ensure_topics(own_broker.url, TOPICS)
    before = make_chain("f", 3)
    await store.append(before)
    async with relay_rig(pool, own_broker.url, TOPICS) as rig:
        rig.start()
        await read_topic(own_broker.url, FLAG_TOPIC, {("f", v) for v in (1, 2, 3)}, within=30)

        await asyncio.to_thread(own_broker.kill)
        during = make_chain("g", 5)
        for event in during:  # Postgres takes every append while Kafka is down
            await store.append([event])
        await eventually(lambda: _breaker_is(rig.relay.breaker.state, BreakerState.OPEN), what="breaker open")
        await eventually(lambda: _status_is(pool, "open", min_backlog=5), what="status open, backlog 5")

        calls = rig.publisher.calls
        await asyncio.sleep(3.0)  # a measurement window, not a synchronisation
        trials = rig.publisher.calls - calls
        assert trials <= 5, f"{trials} publish calls in 3 s with an open breaker (reset timeout 1 s)"

        await asyncio.to_thread(own_broker.start)  # empty: no topic, no record
        records = await read_topic(
            own_broker.url, FLAG_TOPIC, {(e.flag_key, e.version) for e in before + during}, within=60
        )
        assert first_versions(records, "f") == [1, 2, 3]
        assert first_versions(records, "g") == [1, 2, 3, 4, 5]
        assert rig.relay.log_resets >= 1
        await eventually(
            lambda: _status_is(pool, "closed", min_backlog=0, max_backlog=0), what="status closed, no backlog"
        )
        (status,) = await read_relay_status(pool)
        assert status.log_resets >= 1 and not status.degraded


async def test_relay__broker_lost_its_log_while_idle__probe_republishes_everything_in_order(
    own_broker: KafkaServer, store: PostgresEventStore, pool: asyncpg.Pool
) -> None:
    await ensure_topics(own_broker.url, TOPICS)
    chains = {key: make_chain(key, 4) for key in ("a", "b", "c")}
    for chain in chains.values():
        await store.append(chain)
    expected = {(e.flag_key, e.version) for chain in chains.values() for e in chain}
    async with relay_rig(pool, own_broker.url, TOPICS, probe_interval=0.5) as rig:
        rig.start()
        first = await read_topic(own_broker.url, FLAG_TOPIC, expected, within=30)

        await asyncio.to_thread(own_broker.kill)
        await asyncio.to_thread(own_broker.start)  # back at once, empty; nothing new is appended

        records = await read_topic(own_broker.url, FLAG_TOPIC, expected, within=60)
        for key in chains:
            assert first_versions(records, key) == [1, 2, 3, 4]
        assert rig.relay.log_resets == 1
        # the new log is a new epoch, on every record and in Postgres (what projector checkpoints compare)
        assert {log_epoch_of(r.headers.items()) for r in first} == {0}
        assert {log_epoch_of(r.headers.items()) for r in records} == {1}
        epochs = await pool.fetch("SELECT relay, epoch FROM relay_log_epochs")
        assert [row["epoch"] for row in epochs] == [1], epochs


async def _breaker_is(state: BreakerState, wanted: BreakerState) -> bool:
    return state is wanted


async def _status_is(
    pool: asyncpg.Pool, breaker: str, *, min_backlog: int, max_backlog: int | None = None
) -> bool:
    statuses = await read_relay_status(pool)
    if not statuses:
        return False
    status = statuses[0]
    in_range = status.backlog >= min_backlog and (max_backlog is None or status.backlog <= max_backlog)
    return status.breaker_state == breaker and in_range
