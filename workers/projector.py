"""The projector process: ``python -m workers.projector``.

Wiring only: settings -> logging, metrics -> topic -> Redis client (explicit timeouts, retries and
health checks: it reconnects by itself) -> read model behind the ``redis-projector`` breaker ->
dead-letter queue (Postgres, when ``DATABASE_URL`` is set) -> projector.

SIGTERM or SIGINT: the batch in hand is finished (applied and checkpointed in Redis, offsets
committed), then exit 0 — within ``shutdown_grace_seconds``: past it the batch is abandoned (the
Redis checkpoint moves atomically with each write, so the next projector resumes exactly there).
Without a database a poison event stops the process with exit code 3; with one it is parked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from events.deadletters import DeadLetterStore
from events.kafka.adapter import ensure_topics, flag_events_spec
from events.store.db import apply_migrations, create_pool
from projections.connection import require_text_client
from projections.deadletters import ProjectorDeadLetters
from projections.errors import PoisonEvent
from projections.keys import Keyspace
from projections.projector import Projector
from projections.resilience import ResilientReadModel, make_projector_breaker
from runtime.settings import Settings, SettingsError
from workers._runner import run_bounded, run_worker

__all__ = ["main", "make_projector_redis", "run_projector"]

log = structlog.get_logger("workers.projector")

_HEALTH_CHECK_SECONDS = 15
_REDIS_RETRIES = 2
EXIT_POISON = 3


def make_projector_redis(url: str, settings: Settings) -> Redis:
    """redis-py 8.1 changed its defaults: every timeout, retry and health check is set here."""
    client = Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=min(settings.redis_socket_timeout_seconds, 2.0),
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), _REDIS_RETRIES),
        health_check_interval=_HEALTH_CHECK_SECONDS,
    )
    return require_text_client(client)


@contextlib.asynccontextmanager
async def _dead_letter_store(settings: Settings) -> AsyncIterator[DeadLetterStore | None]:
    if not settings.database_url:
        log.warning("projector.no_dead_letter_queue", reason="DATABASE_URL is not set")
        yield None
        return
    await apply_migrations(settings.database_url)
    pool: asyncpg.Pool = await create_pool(
        settings.database_url, min_size=1, max_size=2, command_timeout=settings.db_command_timeout_seconds
    )
    try:
        yield DeadLetterStore(pool)
    finally:
        await pool.close()


async def run_projector(settings: Settings, stop: asyncio.Event) -> None:
    redis_url, bootstrap = settings.redis_url, settings.kafka_bootstrap_servers
    if not redis_url or not bootstrap:
        raise SettingsError("the projector needs REDIS_URL and KAFKA_BOOTSTRAP_SERVERS")
    await ensure_topics(bootstrap, [flag_events_spec(settings.flag_events_topic)])
    client = make_projector_redis(redis_url, settings)
    keys = Keyspace(settings.redis_namespace)
    read_model = ResilientReadModel(client, keys, breaker=make_projector_breaker())
    async with _dead_letter_store(settings) as store:
        projector = Projector(
            read_model,
            bootstrap_servers=bootstrap,
            topic=settings.flag_events_topic,
            group=settings.projector_group,
            client_id=f"{settings.kafka_client_id}-projector",
            dead_letters=None if store is None else ProjectorDeadLetters(store, read_model),
        )
        await projector.start()
        log.info("projector.started", topic=settings.flag_events_topic, group=settings.projector_group)
        try:
            await run_bounded(projector.run, stop, settings.shutdown_grace_seconds, role="projector")
        finally:
            await projector.stop()
            await client.aclose()
            log.info("projector.stopped", applied=projector.applied)


def _poison_exit(error: Exception) -> int | None:
    """Without a dead-letter queue a poison event stops the projector: exit 3."""
    if not isinstance(error, PoisonEvent):
        return None
    log.error(
        "projector.poison_stop",
        kind=error.kind,
        topic=error.topic,
        partition=error.partition,
        offset=error.offset,
    )
    return EXIT_POISON


def main() -> None:
    run_worker("projector", run_projector, on_error=_poison_exit)


if __name__ == "__main__":
    main()
