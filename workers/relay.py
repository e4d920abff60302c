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
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

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
from monitoring import metrics
from monitoring.logging import configure_logging
from runtime.settings import Settings, SettingsError, load_settings

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
    pool = await create_pool(database_url, min_size=1, max_size=3,
                             command_timeout=settings.db_command_timeout_seconds)

    def new_producer() -> AIOKafkaProducer:
        return make_producer(bootstrap, client_id=f"{settings.kafka_client_id}-relay",
                             request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000))

    publisher = KafkaPublisher(
        None, settings.flag_events_topic, metric_alerts_topic=settings.metric_alerts_topic,
        send_timeout=settings.kafka_send_timeout_seconds, renew=new_producer,
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
            breaker=AsyncCircuitBreaker("kafka-relay", fail_max=settings.relay_breaker_fail_max,
                                        reset_timeout=settings.relay_breaker_reset_seconds),
            letters=RelayLetters(DeadLetterStore(pool), pool),
            guard=LogGuard(pool, RELAY_NAME, bootstrap=bootstrap, topics=_topics(settings)),
            status=RelayStatusWriter(pool, RELAY_NAME),
        )
        await _run_bounded(relay, stop, settings.shutdown_grace_seconds)
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


async def _run_bounded(relay: Relay, stop: asyncio.Event, grace: float) -> None:
    """Run until ``stop``; then give the batch in hand ``grace`` seconds to finish."""
    task = asyncio.create_task(relay.run(stop))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            done, _ = await asyncio.wait([task], timeout=grace)
            if not done:
                log.warning("relay.grace_expired", grace_s=grace)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        task.result()
    finally:
        stopping.cancel()


def _version() -> str:
    try:
        return version("flagstream")
    except PackageNotFoundError:
        return "dev"


async def _main() -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)
    metrics.set_build_info(_version(), "relay")
    server = metrics.start_metrics_server(settings.metrics_port) if settings.metrics_port > 0 else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_relay(settings, stop)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
    return 0


def main() -> None:
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
