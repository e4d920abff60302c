"""One :class:`EnvironmentReader` per environment, created lazily (what the API holds)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from redis.asyncio import Redis

from projections.connection import make_redis
from projections.keys import DEFAULT_NAMESPACE
from projections.reader import EnvironmentReader

__all__ = ["ReaderPool"]


class ReaderPool:
    """Readers sharing one Redis client; :meth:`get` starts a reader the first time it is asked for."""

    def __init__(
        self, redis: str | Redis, *, namespace: str = DEFAULT_NAMESPACE, poll_interval: float = 1.0
    ) -> None:
        self._owns_client = isinstance(redis, str)
        self._client = make_redis(redis, socket_timeout=2.0, retries=0) if isinstance(redis, str) else redis
        self._namespace = namespace
        self._poll_interval = poll_interval
        self._readers: dict[str, EnvironmentReader] = {}
        self._lock = asyncio.Lock()

    @property
    def readers(self) -> Mapping[str, EnvironmentReader]:
        return dict(self._readers)

    def open(self, environment: str) -> EnvironmentReader | None:
        """The reader of ``environment`` if it is started already, else None (never starts one)."""
        return self._readers.get(environment)

    async def get(self, environment: str) -> EnvironmentReader:
        """The started reader of ``environment`` (raises ``ReadModelUnavailable`` if it cannot load)."""
        reader = self._readers.get(environment)
        if reader is not None:
            return reader
        async with self._lock:
            reader = self._readers.get(environment)
            if reader is None:
                reader = EnvironmentReader(
                    self._client, environment, namespace=self._namespace, poll_interval=self._poll_interval
                )
                await reader.start()
                self._readers[environment] = reader
            return reader

    async def close(self) -> None:
        async with self._lock:
            readers, self._readers = self._readers, {}
            for reader in readers.values():
                await reader.stop()
            if self._owns_client:
                await self._client.aclose()
