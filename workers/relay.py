"""The relay process: ``python -m workers.relay``.

Wiring only: settings -> migrations -> pool -> store -> topic -> producer -> publisher -> relay.
SIGTERM or SIGINT: the batch in hand is finished (published and checkpointed), then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from events.db import Listener, apply_migrations, create_pool
from events.kafka import KafkaPublisher, ensure_topics, flag_events_spec, make_producer
from events.relay import Relay
from events.store import PostgresEventStore
from monitoring.logging import configure_logging
from runtime.settings import Settings, SettingsError, load_settings

__all__ = ["main", "run_relay"]

log = structlog.get_logger("workers.relay")


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    database_url, bootstrap = settings.database_url, settings.kafka_bootstrap_servers
    if not database_url or not bootstrap:
        raise SettingsError("the relay needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS")
    await apply_migrations(database_url)
    await ensure_topics(bootstrap, [flag_events_spec(settings.flag_events_topic)])
    pool = await create_pool(database_url, min_size=1, max_size=2,
                             command_timeout=settings.db_command_timeout_seconds)
    producer = make_producer(bootstrap, client_id=f"{settings.kafka_client_id}-relay",
                             request_timeout_ms=int(settings.kafka_request_timeout_seconds * 1000))
    await producer.start()
    try:
        publisher = KafkaPublisher(
            producer, settings.flag_events_topic, send_timeout=settings.kafka_send_timeout_seconds
        )
        relay = Relay(
            PostgresEventStore(pool),
            publisher,
            topic=settings.flag_events_topic,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_seconds,
            listener=Listener(database_url),
        )
        await relay.run(stop)
    finally:
        await producer.stop()
        await pool.close()


async def _main() -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_relay(settings, stop)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def main() -> None:
    configure_logging()
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
