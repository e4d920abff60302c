"""The fault proxy, proven against the real Redis and Postgres servers.

Each test also checks that the driver errors the faults produce are classified *retriable*
(:func:`events.resilience.classify`): the classification is tested on real errors, not only on
hand-built ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Self
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, NoBackoff

from events.resilience import classify
from tests.faults.proxy import FaultProxy, free_port

pytestmark = pytest.mark.integration

_TIMEOUT = 0.5


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(*_host_port(redis_url, 6379)) as proxy:
        yield proxy


def _client(proxy: FaultProxy, *, retries: int = 0, timeout: float = _TIMEOUT) -> aioredis.Redis:
    """A client with explicit timeouts and retries (redis-py 8 defaults would hide the faults)."""
    return aioredis.Redis(
        host=proxy.host, port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries), single_connection_client=True,
    )  # fmt: skip


async def _raw_ping(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(b"PING\r\n")
    await writer.drain()
    return reader, writer


async def test_pass_through__ping__pong(redis_proxy: FaultProxy) -> None:
    client = _client(redis_proxy)
    try:
        assert await client.ping()
        assert await client.echo("through the proxy") == b"through the proxy"
        assert redis_proxy.accepted == 1
        assert redis_proxy.connections == 1
    finally:
        await client.aclose()


async def test_latency__each_direction_delayed__round_trip_slower(redis_proxy: FaultProxy) -> None:
    client = _client(redis_proxy, timeout=1.0)
    try:
        await client.ping()
        redis_proxy.set_latency(0.1)
        started = time.monotonic()
        await client.ping()
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 1.0
        redis_proxy.set_latency(0.6)
        with pytest.raises(redis_errors.TimeoutError) as raised:
            await client.ping()
        assert classify(raised.value) == "retriable"
    finally:
        await client.aclose()


async def test_drop__ping_times_out__works_again_after_restore(redis_proxy: FaultProxy) -> None:
    client = _client(redis_proxy)
    try:
        await client.ping()
        redis_proxy.drop()
        with pytest.raises(redis_errors.TimeoutError) as raised:
            await client.ping()
        assert classify(raised.value) == "retriable"
        await redis_proxy.restore()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_drop__new_connection_accepted_but_held__delivered_in_order_on_restore(
    redis_proxy: FaultProxy,
) -> None:
    redis_proxy.drop()
    reader, writer = await _raw_ping(redis_proxy)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), _TIMEOUT)
        assert redis_proxy.accepted == 1
        await redis_proxy.restore()
        assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
    finally:
        writer.close()


async def test_cut__established_connection_reset__reconnects(redis_proxy: FaultProxy) -> None:
    client = _client(redis_proxy)
    try:
        await client.ping()
        redis_proxy.cut()
        assert redis_proxy.connections == 0
        with pytest.raises(redis_errors.ConnectionError) as raised:
            await client.ping()
        assert classify(raised.value) == "retriable"
        assert await client.ping()  # the listener is still up: a new connection goes through
        assert redis_proxy.accepted == 2
    finally:
        await client.aclose()


async def test_cut__while_held_by_drop__held_connection_reset_too(redis_proxy: FaultProxy) -> None:
    redis_proxy.drop()
    reader, writer = await _raw_ping(redis_proxy)
    try:
        async with asyncio.timeout(5):
            while redis_proxy.connections == 0:  # noqa: ASYNC110 - polls the proxy's own state
                await asyncio.sleep(0.005)
        redis_proxy.cut()
        assert await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        pass  # a reset is the other way a cut connection shows
    finally:
        writer.close()
    assert redis_proxy.connections == 0


async def test_refuse__new_connections_refused__same_port_after_restore(redis_proxy: FaultProxy) -> None:
    port = redis_proxy.port
    await redis_proxy.refuse()
    assert not redis_proxy.listening
    client = _client(redis_proxy)
    try:
        with pytest.raises(redis_errors.ConnectionError) as raised:
            await client.ping()
        assert classify(raised.value) == "retriable"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(redis_proxy.host, port)
        await redis_proxy.restore()
        assert redis_proxy.port == port
        assert await client.ping()
    finally:
        await client.aclose()


class _CountingBackoff(AbstractBackoff):
    """A constant backoff that counts the failures redis-py retried (to know the outage was felt)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.failures = 0

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self  # redis-py deep-copies its Retry per connection: keep counting here

    def reset(self) -> None:
        pass

    def compute(self, failures: int) -> float:
        self.failures += 1
        return self.seconds


async def test_server_gone__refuse_and_cut__client_with_retries_recovers_after_restore(
    redis_proxy: FaultProxy,
) -> None:
    backoff = _CountingBackoff(0.02)
    client = aioredis.Redis(
        host=redis_proxy.host, port=redis_proxy.port, socket_timeout=_TIMEOUT,
        socket_connect_timeout=_TIMEOUT, retry=Retry(backoff, 500), single_connection_client=True,
    )  # fmt: skip
    try:
        await client.set("fault:key", "kept")
        await redis_proxy.refuse()
        redis_proxy.cut()
        outage = asyncio.ensure_future(client.get("fault:key"))
        async with asyncio.timeout(5):
            while backoff.failures < 3:  # noqa: ASYNC110 - polls the client's own retry count
                await asyncio.sleep(0.005)
        assert not outage.done()
        await redis_proxy.restore()
        assert await asyncio.wait_for(outage, 10) == b"kept"
        assert redis_proxy.accepted == 2
    finally:
        await client.delete("fault:key")
        await client.aclose()


async def test_context_manager__exited__port_closed_and_connections_reset(redis_url: str) -> None:
    async with FaultProxy(*_host_port(redis_url, 6379)) as proxy:
        reader, writer = await _raw_ping(proxy)
        assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.host, proxy.port)


async def test_postgres__cut__query_fails_retriable_and_pool_reconnects(fresh_database: str) -> None:
    parts = urlsplit(fresh_database)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        url = fresh_database.replace(parts.netloc, f"{parts.username}@{proxy.address}", 1)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1, timeout=5, command_timeout=5)
        assert pool is not None
        try:
            assert await pool.fetchval("SELECT 1") == 1
            proxy.cut()
            with pytest.raises(
                (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, OSError)
            ) as raised:
                await pool.fetchval("SELECT 1")
            assert classify(raised.value) == "retriable"
            assert await pool.fetchval("SELECT 2") == 2
        finally:
            pool.terminate()


async def test_pass_through__large_values_both_ways__intact(redis_proxy: FaultProxy) -> None:
    client = _client(redis_proxy, timeout=10.0)
    value = bytes(range(256)) * 8192  # 2 MiB, many chunks each way
    try:
        redis_proxy.set_latency(0.01)
        await client.set("fault:large", value)
        assert await client.get("fault:large") == value
    finally:
        await client.delete("fault:large")
        await client.aclose()


async def test_upstream_down__client_connection_reset() -> None:
    async with FaultProxy("127.0.0.1", free_port()) as proxy:
        client = _client(proxy)
        try:
            with pytest.raises(redis_errors.ConnectionError) as raised:
                await client.ping()
            assert classify(raised.value) == "retriable"
            assert proxy.accepted == 1
        finally:
            await client.aclose()


async def test_fixed_port__listens_where_told(redis_url: str) -> None:
    port = free_port()
    async with FaultProxy(*_host_port(redis_url, 6379), port=port) as proxy:
        assert proxy.port == port
        reader, writer = await _raw_ping(proxy)
        try:
            assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
        finally:
            writer.close()
