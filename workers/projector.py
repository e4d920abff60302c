"""The projector process: ``python -m workers.projector``.

Wiring only: settings -> topic -> Redis client -> read model -> projector.
SIGTERM or SIGINT: the batch in hand is finished (applied and checkpointed in Redis, offsets
committed), then exit 0. A poison event stops the process with exit code 3 (issue 4's
dead-letter queue will park it instead).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from events.kafka import ensure_topics, flag_events_spec
from monitoring.logging import configure_logging
from projections.connection import make_redis
from projections.errors import PoisonEvent
from projections.keys import Keyspace
from projections.projector import Projector
from projections.readmodel import RedisReadModel
from runtime.settings import Settings, SettingsError, load_settings

__all__ = ["main", "run_projector"]

log = structlog.get_logger("workers.projector")


async def run_projector(settings: Settings, stop: asyncio.Event) -> None:
    redis_url, bootstrap = settings.redis_url, settings.kafka_bootstrap_servers
    if not redis_url or not bootstrap:
        raise SettingsError("the projector needs REDIS_URL and KAFKA_BOOTSTRAP_SERVERS")
    await ensure_topics(bootstrap, [flag_events_spec(settings.flag_events_topic)])
    client = make_redis(redis_url, socket_timeout=settings.redis_socket_timeout_seconds)
    projector = Projector(
        RedisReadModel(client, Keyspace(settings.redis_namespace)),
        bootstrap_servers=bootstrap,
        topic=settings.flag_events_topic,
        group=settings.projector_group,
        client_id=f"{settings.kafka_client_id}-projector",
    )
    await projector.start()
    log.info("projector.started", topic=settings.flag_events_topic, group=settings.projector_group)
    try:
        await projector.run(stop)
    finally:
        await projector.stop()
        await client.aclose()
        log.info("projector.stopped", applied=projector.applied)


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
        await run_projector(settings, stop)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    except PoisonEvent as e:
        log.error("projector.poison_stop", kind=e.kind, topic=e.topic, partition=e.partition, offset=e.offset)
        return 3
    return 0


def main() -> None:
    configure_logging()
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
