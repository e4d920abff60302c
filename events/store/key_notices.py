"""Key revocations reach every API process: a LISTEN on ``flagstream_api_keys``.

:class:`KeyNoticeListener` holds one dedicated connection LISTENing on the channel the key service
NOTIFYs at each revocation (payload: the key id) and calls ``on_revoked(key_id)``. When the
connection is lost it calls ``on_revoked(None)`` (forget every cached key: a notice may have been
missed) and reconnects every ``retry_seconds``. A revocation is therefore refused in this process
within milliseconds of its commit while the listener is connected, and within the auth cache's
TTL otherwise (docs/management-api.md has the measured figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from events.errors import StoreUnavailable
from events.store.db import CONNECTION_ERRORS, connect

__all__ = ["KeyNoticeListener"]

log = structlog.get_logger("events.store.key_notices")

OnRevoked = Callable[[str | None], None]


class KeyNoticeListener:
    def __init__(self, dsn: str, channel: str, on_revoked: OnRevoked, *, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_revoked = on_revoked
        self._retry = retry_seconds
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def backend_pid(self) -> int | None:
        """The Postgres backend of the LISTEN connection (for diagnostics), if connected."""
        return self._conn.get_server_pid() if self.connected and self._conn is not None else None

    async def start(self) -> None:
        """Listen now if Postgres answers (otherwise keep trying in the background)."""
        if not await self._listen():
            self._lost.set()  # the background task keeps trying
        self._task = asyncio.create_task(self._keep_listening(), name="key-notices")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except CONNECTION_ERRORS:
                conn.terminate()

    async def _keep_listening(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            self._on_revoked(None)  # notices sent while we were not listening are gone
            for attempt in itertools.count(1):
                if await self._listen():
                    break
                log.info("keys.listen_retry", attempt=attempt)
                await asyncio.sleep(self._retry)  # reconnect back-off (the auth TTL bounds the gap)

    async def _listen(self) -> bool:
        try:
            conn = await connect(self._dsn, connect_timeout=5)
            await conn.add_listener(self._channel, self._on_notify)
        except StoreUnavailable as e:
            log.warning("keys.listen_failed", channel=self._channel, error_class=type(e).__name__)
            return False
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, OSError) as e:  # e.g. the database not there yet
            log.warning("keys.listen_failed", channel=self._channel, error_class=type(e).__name__)
            return False
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._on_revoked(None)
        log.info("keys.listening", channel=self._channel)
        return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_revoked(payload or None)

    def _on_terminated(self, *_: Any) -> None:
        self._conn = None
        self._lost.set()
