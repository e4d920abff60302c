"""Readiness probes: one bounded, real request per server. Each returns a bool and never raises."""

from __future__ import annotations

import asyncio
import socket

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import redis
from aiokafka.client import AIOKafkaClient

from runtime.processes import run_coroutine_sync

__all__ = ["probe_kafka", "probe_postgres", "probe_redis", "probe_tcp"]

_PROBE_TIMEOUT = 3.0


def probe_tcp(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (a cheap first check)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_redis(url: str) -> bool:
    """Whether Redis at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=_PROBE_TIMEOUT, socket_connect_timeout=_PROBE_TIMEOUT)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


async def _ask_postgres(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=_PROBE_TIMEOUT)
    try:
        value = await conn.fetchval("SELECT 1", timeout=_PROBE_TIMEOUT)
        return bool(value == 1)
    finally:
        await conn.close(timeout=_PROBE_TIMEOUT)


def probe_postgres(url: str) -> bool:
    """Whether PostgreSQL at ``url`` accepts a connection and answers ``SELECT 1``."""
    try:
        return run_coroutine_sync(lambda: _ask_postgres(url), timeout=_PROBE_TIMEOUT * 3)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def _ask_kafka(bootstrap: str) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(_PROBE_TIMEOUT * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), _PROBE_TIMEOUT)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), _PROBE_TIMEOUT)
        return len(metadata.brokers()) > 0
    finally:
        await client.close()


def probe_kafka(bootstrap: str) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request listing at least one broker."""
    try:
        return run_coroutine_sync(lambda: _ask_kafka(bootstrap), timeout=_PROBE_TIMEOUT * 3)
    except Exception:  # aiokafka raises many unrelated types while a broker boots
        return False
