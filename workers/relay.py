"""The relay process: ``python -m workers.relay``.

Wiring only: settings -> logging, metrics -> migrations -> topics (flag-events and metric-alerts)
-> pool -> store, dead letters, status, log guard -> publisher (renewed after failures) -> relay.
SIGTERM or SIGINT: the batch in hand is finished (published and checkpointed), then exit 0 —
within ``shutdown_grace_seconds``: past it the round is abandoned (its checkpoint has not moved,
so it is republished by the next relay; nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaProducer

from events.deadletters import DeadLetterStore
from events.errors import PublishFailed
from events.kafka.adapter import (
    KafkaPublisher,
    TopicSpec,
    ensure_topics,
    flag_events_spec,
    make_producer,
    metric_alerts_spec,
)
from events.relay.letters import RelayLetters
from events.relay.log_guard import LogGuard
from events.relay.relay import Relay
from events.relay.status import RelayStatusWriter
from events.resilience import AsyncCircuitBreaker
from events.store.db import Listener, apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from runtime.settings import Settings, SettingsError
from workers._runner import run_bounded, run_worker

__all__ = ["main", "run_relay"]

log = structlog.get_logger("workers.relay")

RELAY_NAME = "flag-events"


def _topics(settings: Settings) -> list[TopicSpec]:
    return [flag_events_spec(settings.flag_events_topic), metric_alerts_spec(settings.metric_alerts_topic)]


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    database_url, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    if not database_url or not bootstrap:
        raise SettingsError("the relay needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS")
    await apply_migrations(database_url)
    if not await _wait_for_topics(bootstrap, _topics(settings), stop):
        return
    pool = await create_pool(
        database_url, min_size=1, max_size=3, command_timeout=settings.db_command_timeout_seconds
    )

    def new_producer() -> AIOKafkaProducer:
        return make_producer(
            bootstrap,
            client_id=f"{settings.kafka_client_id}-relay",
            request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000),
        )

    publisher = KafkaPublisher(
        None,
        settings.flag_events_topic,
        metric_alerts_topic=settings.metric_alerts_topic,
        send_timeout=settings.kafka_send_timeout_seconds,
        renew=new_producer,
    )
    try:
        relay = Relay(
            PostgresEventStore(pool),
            publisher,
            name=RELAY_NAME,
            topic=settings.flag_events_topic,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_seconds,
            listener=Listener(database_url),
            breaker=AsyncCircuitBreaker(
                "kafka-relay",
                fail_max=settings.relay_breaker_fail_max,
                reset_timeout=settings.relay_breaker_reset_seconds,
            ),
            letters=RelayLetters(DeadLetterStore(pool), pool),
            guard=LogGuard(pool, RELAY_NAME, bootstrap=bootstrap, topics=_topics(settings)),
            status=RelayStatusWriter(pool, RELAY_NAME),
        )
        await run_bounded(relay.run, stop, settings.shutdown_grace_seconds, role="relay")
    finally:
        await publisher.close()
        await pool.close()


async def _wait_for_topics(bootstrap: str, specs: list[TopicSpec], stop: asyncio.Event) -> bool:
    """Create the topics, waiting for Kafka as long as it takes (appends are safe in Postgres
    meanwhile); False when stopped first."""
    while not stop.is_set():
        try:
            await ensure_topics(bootstrap, specs)
            return True
        except PublishFailed as e:
            log.warning("relay.kafka_unavailable_at_start", error=e.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    return False


def main() -> None:
    run_worker("relay", run_relay)


if __name__ == "__main__":
    main()
