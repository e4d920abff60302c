"""The whole platform in one event loop, on the real servers: API (ASGI), relay and projector.

Each :class:`Platform` gets its own database, Redis namespace and topic, so tests never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from api.app import create_app
from events.kafka.adapter import (
    KafkaPublisher,
    ensure_topics,
    flag_events_spec,
    make_producer,
    metric_alerts_spec,
)
from events.relay.relay import Relay
from events.store.db import Listener, apply_migrations, create_pool
from events.store.keys import ApiKeyStore
from events.store.postgres import PostgresEventStore
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.projector import Projector
from projections.readmodel import RedisReadModel
from runtime.settings import Settings, load_settings

__all__ = ["Platform", "module_database", "start_platform"]


@dataclass
class Platform:
    settings: Settings
    client: httpx.AsyncClient
    keys: dict[str, str]
    store: PostgresEventStore
    redis: Redis
    app: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def container(self) -> Any:
        return self.app.state.container

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def request(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def kafka_events(self, expected: int, within: float = 20.0) -> list[dict[str, Any]]:
        """Every record of the flag-events topic, read from the beginning until ``expected`` are seen."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.settings.flag_events_topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        records: list[dict[str, Any]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while len(records) < expected and loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, batch in batches.items():
                    for record in batch:
                        records.append(
                            {
                                "partition": tp.partition,
                                "offset": record.offset,
                                "key": record.key.decode(),
                                "value": record.value,
                                "headers": dict(record.headers),
                            }
                        )
        finally:
            await consumer.stop()
        return records


async def _until_assigned(projector: Projector, within: float = 30.0) -> None:
    """Hand the platform out only once the projector owns its partitions (a group join takes seconds):
    otherwise the first ``?wait=projected`` of a module can time out on the join, not on the projection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not projector._consumer.assignment():  # the test harness reads the consumer's state
        if loop.time() > deadline:
            raise TimeoutError(f"projector had no partitions after {within}s")
        await asyncio.sleep(0.05)  # polling the join's outcome, bounded by the deadline


@contextlib.asynccontextmanager
async def module_database(database_url: str) -> AsyncIterator[str]:
    """A new database on the session server for a group of tests (dropped afterwards)."""
    import asyncpg

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def start_platform(
    database_url: str, redis_url: str, kafka_bootstrap: str, *, run_workers: bool = True, **overrides: Any
) -> AsyncIterator[Platform]:
    suffix = uuid.uuid4().hex[:10]
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        flag_events_topic=f"test.flag-events.{suffix}",
        metric_alerts_topic=f"test.metric-alerts.{suffix}",
        redis_namespace=f"fs-{suffix}",
        projector_group=f"projector-{suffix}",
        log_json=False,
        **overrides,
    )
    await apply_migrations(database_url)
    await ensure_topics(
        kafka_bootstrap,
        [
            flag_events_spec(settings.flag_events_topic, partitions=3),
            metric_alerts_spec(settings.metric_alerts_topic, partitions=1),
        ],
    )
    pool = await create_pool(database_url, min_size=1, max_size=4)
    store = PostgresEventStore(pool)
    keys: dict[str, str] = {}
    key_store = ApiKeyStore(pool)
    for role in ("admin", "writer", "reader", "ops", "alerts"):
        keys[role] = (await key_store.create(f"test-{role}", role))[1]
    redis = make_redis(redis_url, socket_timeout=5)
    app = create_app(settings)
    producer = make_producer(kafka_bootstrap, linger_ms=0)
    await producer.start()
    relay = Relay(
        store,
        KafkaPublisher(
            producer,
            settings.flag_events_topic,
            send_timeout=10,
            metric_alerts_topic=settings.metric_alerts_topic,
        ),
        topic=settings.flag_events_topic,
        poll_interval=0.05,
        listener=Listener(database_url),
    )
    # built only when it runs: an unstarted projector's consumer is an unclosed-resource warning
    projector = (
        Projector(
            RedisReadModel(redis, Keyspace(settings.redis_namespace)),
            bootstrap_servers=kafka_bootstrap,
            topic=settings.flag_events_topic,
            group=settings.projector_group,
        )
        if run_workers
        else None
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.test") as client:
            platform = Platform(settings, client, keys, store, redis, app=app)
            if projector is not None:
                await projector.start()
                platform.tasks.append(asyncio.create_task(relay.run(platform.stop)))
                platform.tasks.append(asyncio.create_task(projector.run(platform.stop, poll_timeout=0.05)))
                await _until_assigned(projector)
            try:
                yield platform
            finally:
                platform.stop.set()
                await asyncio.gather(*platform.tasks, return_exceptions=True)
                if projector is not None:
                    await projector.stop()
                await producer.stop()
                await redis.aclose()
                await pool.close()
