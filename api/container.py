"""The API process's services, built once in the app's lifespan from :class:`Settings` (never at import)."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog
from redis.asyncio import Redis

from api.auth import AuthCache, Principal
from api.errors import ApiError
from api.ratelimit import RateLimiter
from api.readers import BoundedReaderPool
from core.commands import Command
from core.envelope import SEGMENT_STREAM_PREFIX
from core.errors import DomainError, VersionConflict
from core.evaluation import EvaluationResult
from core.state import FlagState
from events.audit.access import log_audit_access
from events.audit.asof import evaluate_as_of, flag_as_of
from events.audit.stream import StreamSettings
from events.commands.keys import KEY_NOTICE_CHANNEL
from events.commands.service import CommandMeta, CommandOutcome, CommandService
from events.deadletters import DeadLetterStore
from events.deadletters.operations import refresh_dead_letter_metrics
from events.relay.status import RelayStatus, read_relay_status
from events.resilience import AsyncCircuitBreaker
from events.store.db import apply_migrations, create_pool
from events.store.guarded import GuardedEventStore
from events.store.key_notices import KeyNoticeListener
from events.store.keys import ApiKeyStore
from events.store.postgres import PostgresEventStore
from events.store.retention import run_retention
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

__all__ = ["POSTGRES_BREAKER", "Container"]

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger("api.container")

POSTGRES_BREAKER = "postgres-api"
_GAUGE_REFRESH_SECONDS = 5.0
_POOL_CLOSE_SECONDS = 5.0


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
    guarded_store: GuardedEventStore
    breakers: dict[str, AsyncCircuitBreaker] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    retention_stop: asyncio.Event = field(default_factory=asyncio.Event)
    retention_task: asyncio.Task[None] | None = None
    as_of_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    key_notices: KeyNoticeListener | None = None  # revocations from other processes
    _gauges_refreshed_at: float = float("-inf")

    @classmethod
    async def start(cls, settings: Settings) -> Container:
        database_url = _required(settings.database_url, "DATABASE_URL")
        await apply_migrations(database_url)
        pool = await create_pool(
            database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            command_timeout=settings.db_command_timeout_seconds,
        )
        store = PostgresEventStore(pool)
        keys = ApiKeyStore(pool)
        breaker = AsyncCircuitBreaker(
            POSTGRES_BREAKER,
            fail_max=int(getattr(settings, "api_breaker_fail_max", 5)),
            reset_timeout=float(getattr(settings, "api_breaker_reset_seconds", 5.0)),
        )
        guarded = GuardedEventStore(store, breaker)

        async def lookup(secret: str) -> Principal | None:
            # through the breaker: a Postgres outage is a 503 (StoreUnavailable/CircuitOpen), never a 401
            found = await guarded.guard_read(keys.authenticate, secret)
            return None if found is None else Principal(found.name, str(found.role.value), found.key_id)

        redis = make_redis(
            _required(settings.redis_url, "REDIS_URL"),
            socket_timeout=settings.redis_socket_timeout_seconds,
            retries=1,
        )
        keyspace = Keyspace(settings.redis_namespace)
        limiter = None
        if settings.rate_limits_enabled:  # its own client: short timeouts, no retry (a fallback exists)
            limiter = RateLimiter(
                make_redis(settings.redis_url or "", socket_timeout=0.25, connect_timeout=0.25, retries=0),
                settings.rate_limits,
                namespace=settings.redis_namespace,
                fallback_seconds=settings.rate_limit_fallback_seconds,
            )
        container = cls(
            settings=settings,
            pool=pool,
            store=store,
            keys=keys,
            auth=AuthCache(lookup, ttl_seconds=5.0),
            commands=CommandService(guarded, clock=_utc_now, new_id=uuid.uuid4),
            redis=redis,
            keyspace=keyspace,
            queries=ReadModelQueries(redis, keyspace),
            read_model=RedisReadModel(redis, keyspace),
            readers=BoundedReaderPool(
                redis, namespace=settings.redis_namespace, max_environments=settings.reader_max_environments
            ),
            guarded_store=guarded,
            breakers={POSTGRES_BREAKER: breaker},
            limiter=limiter,
            as_of_slots=asyncio.Semaphore(settings.as_of_max_concurrency),
        )
        container.key_notices = KeyNoticeListener(database_url, KEY_NOTICE_CHANNEL, container.auth.forget_key)
        await container.key_notices.start()
        container.retention_task = asyncio.create_task(
            run_retention(
                pool,
                timedelta(seconds=settings.idempotency_ttl_seconds),
                settings.idempotency_purge_interval_seconds,
                container.retention_stop,
            )
        )
        return container

    async def close(self) -> None:
        """Release every client, bounded: a pool whose connections are not back in time is terminated."""
        try:
            if self.key_notices is not None:
                await self.key_notices.close()
            await self.readers.close()
            await self.redis.aclose()
            self.retention_stop.set()
            if self.retention_task is not None:
                await self.retention_task
            if self.limiter is not None:
                await self.limiter.close()
        finally:
            try:
                await asyncio.wait_for(self.pool.close(), _POOL_CLOSE_SECONDS)
            except TimeoutError:
                log.warning("api.pool_close_timeout", seconds=_POOL_CLOSE_SECONDS)
                self.pool.terminate()

    async def read_postgres(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """A read-only Postgres call through the API's breaker, retried within bounds (for routes)."""
        return await self.guarded_store.guard_read(fn, *args, **kwargs)

    async def relay_status(self) -> list[RelayStatus]:
        """What each relay last wrote to ``relay_status`` (read through the breaker)."""
        return await self.read_postgres(read_relay_status, self.pool)

    async def refresh_gauges(self) -> None:
        """DB pool gauges every time; dead-letter gauges at most every few seconds (a failure is logged)."""
        pool = self.pool
        metrics.set_db_pool("api", in_use=pool.get_size() - pool.get_idle_size(), size=pool.get_max_size())
        now = time.monotonic()
        if now - self._gauges_refreshed_at < _GAUGE_REFRESH_SECONDS:
            return
        self._gauges_refreshed_at = now
        try:
            await self.read_postgres(refresh_dead_letter_metrics, DeadLetterStore(pool))
        except Exception as e:
            log.warning("api.dead_letter_metrics_failed", error_class=type(e).__name__)

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
        return {f"breaker:{name}": str(b.state) for name, b in self.breakers.items()}

    def audit_stream(self) -> StreamSettings:
        return StreamSettings(bootstrap_servers=self.kafka_bootstrap, topic=self.settings.flag_events_topic)

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers or ""

    async def flag_as_of(self, key: str, instant: datetime, principal: Principal) -> FlagState:
        """The flag as it was at ``instant``, replayed from the Kafka log (the audit log)."""
        stream = self.audit_stream()
        return await self._replay_as_of(
            lambda: flag_as_of(stream, key, instant),
            lambda: log_audit_access(
                principal.name, "flag_as_of", {"flag": key, "as_of": instant.isoformat()}
            ),
        )

    async def evaluate_as_of(
        self,
        environment: str,
        context: Mapping[str, Any],
        instant: datetime,
        flags: Collection[str] | None,
        principal: Principal,
    ) -> dict[str, EvaluationResult]:
        stream = self.audit_stream()
        return await self._replay_as_of(
            lambda: evaluate_as_of(stream, environment, context, instant, flags),
            lambda: log_audit_access(
                principal.name,
                "evaluate_as_of",
                {"environment": environment, "as_of": instant.isoformat(), "flags": flags},
            ),
        )

    async def _replay_as_of(
        self, replay: Callable[[], Coroutine[Any, Any, T]], log_access: Callable[[], None]
    ) -> T:
        """Run an as-of replay (it reads the topic from offset 0) in a worker thread with its own event
        loop, never on the API's; at most ``as_of_max_concurrency`` at once (``503 as_of_busy`` beyond).

        The slot is released when the thread ends, not when the caller stops waiting: a client that
        gives up does not let more replays run than the bound. Only admitted reads are logged."""
        slots = self.as_of_slots
        if slots.locked():
            raise ApiError(503, "as_of_busy", "as-of reads are all busy in this process; retry shortly")
        await slots.acquire()  # free and no one waits (the busy are refused above): returns at once
        try:
            log_access()
            thread = asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, _run_in_own_loop, replay
            )
        except BaseException:
            slots.release()
            raise
        thread.add_done_callback(lambda _: slots.release())
        return await asyncio.shield(thread)


def _run_in_own_loop(replay: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(replay())


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
