"""The API's evaluation readers, bounded: only environments that exist, at most N readers (LRU).

A reader holds a Redis pub/sub connection and a poll task; a caller must not be able to make the
API create one per made-up environment name. :func:`require_environment` answers ``404`` for an
environment the read model has never seen, and :class:`BoundedReaderPool` stops the least recently
used reader when more than ``max_environments`` are open.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ApiError
from projections.keys import DEFAULT_NAMESPACE, Keyspace
from projections.pool import ReaderPool
from projections.reader import EnvironmentReader

__all__ = ["BoundedReaderPool", "environment_known", "require_environment"]

log = structlog.get_logger("api.readers")


class BoundedReaderPool(ReaderPool):
    """A :class:`ReaderPool` of at most ``max_environments`` readers; the least recently used is evicted."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_environments: int = 64,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(redis, namespace=namespace, poll_interval=poll_interval)
        self._max_environments = max_environments
        self._keyspace = Keyspace(namespace)

    async def get(self, environment: str) -> EnvironmentReader:
        reader = await super().get(environment)
        readers = self._readers
        if next(reversed(readers)) != environment:  # most recently used last
            readers[environment] = readers.pop(environment)
        evicted: list[tuple[str, EnvironmentReader]] = []
        while len(readers) > self._max_environments:
            oldest = next(iter(readers))
            evicted.append((oldest, readers.pop(oldest)))
        for name, old in evicted:
            log.info("readers.evicted", environment=name, open=len(readers))
            await old.stop()
        return reader

    async def exists(self, environment: str) -> bool:
        """True when a reader is open for it or the read model lists it (one Redis call on a miss)."""
        if environment in self._readers:
            return True
        return bool(await self._client.sismember(self._keyspace.environments, environment))


async def environment_known(readers: ReaderPool, environment: str) -> bool:
    """False only when the read model does not know ``environment``; an unbounded pool, or a Redis
    outage (the reader's own start reports it, 503), answers True."""
    if not isinstance(readers, BoundedReaderPool):
        return True
    try:
        return await readers.exists(environment)
    except (RedisError, OSError):
        return True


async def require_environment(readers: ReaderPool, environment: str) -> None:
    """A ``404 unknown_environment`` unless the read model knows ``environment``."""
    if not await environment_known(readers, environment):
        raise ApiError(
            404,
            "unknown_environment",
            f"environment {environment!r} has no flags",
            details=[{"path": "environment", "message": "unknown environment"}],
        )
