"""The API process's services, built once in the app's lifespan from :class:`Settings` (never at import)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from redis.asyncio import Redis

from api.auth import AuthCache, Principal
from core.commands import Command
from core.envelope import SEGMENT_STREAM_PREFIX
from core.errors import DomainError, VersionConflict
from core.evaluation import EvaluationResult
from core.state import FlagState
from events.audit.access import log_audit_access
from events.audit.asof import evaluate_as_of, flag_as_of
from events.audit.stream import StreamSettings
from events.db import apply_migrations, create_pool
from events.keys import ApiKeyStore
from events.service import CommandMeta, CommandOutcome, CommandService
from events.store import PostgresEventStore
from monitoring import metrics
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.pool import ReaderPool
from projections.queries import ReadModelQueries
from projections.readmodel import RedisReadModel
from runtime.settings import SettingsError

if TYPE_CHECKING:
    import asyncpg

    from runtime.settings import Settings

__all__ = ["Container"]

log = structlog.get_logger("api.container")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    pool: asyncpg.Pool
    store: PostgresEventStore
    keys: ApiKeyStore
    auth: AuthCache
    commands: CommandService
    redis: Redis
    keyspace: Keyspace
    queries: ReadModelQueries
    read_model: RedisReadModel
    readers: ReaderPool
    started_at: float = field(default_factory=time.monotonic)
    _extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def start(cls, settings: Settings) -> Container:
        database_url = _required(settings.database_url, "DATABASE_URL")
        await apply_migrations(database_url)
        pool = await create_pool(database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        store = PostgresEventStore(pool)
        keys = ApiKeyStore(pool)

        async def lookup(secret: str) -> Principal | None:
            found = await keys.authenticate(secret)
            return None if found is None else Principal(found.name, str(found.role.value), found.key_id)

        redis = make_redis(
            _required(settings.redis_url, "REDIS_URL"),
            socket_timeout=settings.redis_socket_timeout_seconds,
            retries=1,
        )
        keyspace = Keyspace(settings.redis_namespace)
        return cls(
            settings=settings,
            pool=pool,
            store=store,
            keys=keys,
            auth=AuthCache(lookup, ttl_seconds=5.0),
            commands=CommandService(store, clock=_utc_now, new_id=uuid.uuid4),
            redis=redis,
            keyspace=keyspace,
            queries=ReadModelQueries(redis, keyspace),
            read_model=RedisReadModel(redis, keyspace),
            readers=ReaderPool(redis, namespace=settings.redis_namespace),
        )

    async def close(self) -> None:
        await self.readers.close()
        await self.redis.aclose()
        await self.pool.close()

    async def execute(self, command: Command, meta: CommandMeta) -> CommandOutcome:
        started = time.perf_counter()
        name = type(command).__name__
        try:
            outcome = await self.commands.execute(command, meta)
        except Exception as e:
            metrics.observe_command(name, _failure_outcome(e), time.perf_counter() - started)
            raise
        metrics.observe_command(
            name, "replayed" if outcome.replayed else "accepted", time.perf_counter() - started
        )
        for event in outcome.events:
            metrics.record_events_appended(event.type)
        return outcome

    async def wait_projected(self, stream: str, version: int, environment: str | None) -> bool:
        """Until the read model shows ``version`` of ``stream`` (bounded by the configured timeout)."""
        timeout = self.settings.wait_projected_timeout_seconds
        if environment is not None and not stream.startswith(SEGMENT_STREAM_PREFIX):
            reader = await self.readers.get(environment)
            return await reader.wait_for_version(stream, version, timeout)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while time.monotonic() < deadline:
            if await self.read_model.stored_version(stream) >= version:
                return True
            await asyncio.sleep(delay)  # polling a condition, bounded by the deadline
            delay = min(delay * 2, 0.05)
        return await self.read_model.stored_version(stream) >= version

    def breaker_report(self) -> dict[str, str]:
        """``{"breaker:<name>": state}`` for every circuit breaker of this process."""
        breakers = self._extras.get("breakers", {})
        return {f"breaker:{name}": str(b.state) for name, b in breakers.items()}

    def audit_stream(self) -> StreamSettings:
        return StreamSettings(bootstrap_servers=self.kafka_bootstrap, topic=self.settings.flag_events_topic)

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers or ""

    async def flag_as_of(self, key: str, instant: datetime, principal: Principal) -> FlagState:
        """The flag as it was at ``instant``, replayed from the Kafka log (the audit log)."""
        log_audit_access(principal.name, "flag_as_of", {"flag": key, "as_of": instant.isoformat()})
        return await flag_as_of(self.audit_stream(), key, instant)

    async def evaluate_as_of(
        self,
        environment: str,
        context: Mapping[str, Any],
        instant: datetime,
        flags: Collection[str] | None,
        principal: Principal,
    ) -> dict[str, EvaluationResult]:
        log_audit_access(
            principal.name,
            "evaluate_as_of",
            {"environment": environment, "as_of": instant.isoformat(), "flags": flags},
        )
        return await evaluate_as_of(self.audit_stream(), environment, context, instant, flags)


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise SettingsError(
            f"{variable} is not set: point it at the server, or start the platform with "
            "`flagstream run`, which starts a local stack"
        )
    return value


def _failure_outcome(error: Exception) -> metrics.CommandOutcome:
    if isinstance(error, VersionConflict):
        return "conflict"
    if isinstance(error, DomainError):
        return "rejected"
    if getattr(error, "retriable", False):
        return "unavailable"
    return "error"
