"""A small asyncio TCP proxy that injects network faults between a client and a real server.

Toxiproxy cannot be installed here; this gives the faults the fault tests need::

    async with FaultProxy("127.0.0.1", 6379) as proxy:   # listens on a free port
        client = Redis(host=proxy.host, port=proxy.port)
        proxy.set_latency(0.2)   # each direction: every byte is delivered 0.2 s after it was read
        proxy.drop()             # blackhole: connections accepted, nothing delivered (held, like TCP
                                 # during a partition: delivered in order if restored before they close)
        proxy.cut()              # reset every current connection (both sides), like a crash
        await proxy.refuse()     # stop listening: new connections are refused (ECONNREFUSED)
        await proxy.restore()    # back to a clean pass-through on the same port

Modes combine: ``await proxy.refuse(); proxy.cut()`` is a server that went away. When the
upstream itself refuses, the proxy resets the client's connection.

Kafka: clients connect to the addresses the broker *advertises*, so a proxy in front of a broker
is only used if the broker advertises the proxy: start the broker with ``--listener-url
tcp://127.0.0.1:<broker port> --advertised-listener-url tcp://127.0.0.1:<proxy port>`` and give
the proxy that port (``FaultProxy(host, broker_port, port=proxy_port)``, ``free_port()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from types import TracebackType
from typing import Final, Self

__all__ = ["FaultProxy", "free_port"]

_CHUNK: Final = 65536


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (for a server that must be told its port before it starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Link:
    """One proxied connection: two directions, each a reader task and a delayed writer task."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        """Reset both sides at once (RST, not FIN) and stop forwarding."""
        for _, writer in (self.client, self.upstream):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


def _abort_on_failure(delivery: asyncio.Future[None], link: _Link) -> None:
    """A direction that cannot deliver (peer reset) takes the whole link down."""
    if not delivery.cancelled() and delivery.exception() is not None:
        link.abort()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0):
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = port
        self.latency = 0.0
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._waiting: set[asyncio.StreamWriter] = set()  # accepted while dropping, not yet connected
        self._handlers: set[asyncio.Task[None]] = set()

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()

    async def stop(self) -> None:
        self._stop_listening()
        self.cut()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy (held ones included)."""
        return len(self._links) + len(self._waiting)

    # --- faults ------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, in each direction, by ``seconds`` (order and throughput kept)."""
        self.latency = max(0.0, seconds)

    def drop(self) -> None:
        """Blackhole: keep accepting and reading, deliver nothing until :meth:`restore`."""
        self._flowing.clear()

    def cut(self) -> None:
        """Reset every current connection; the listener (if any) keeps accepting new ones."""
        for link in list(self._links):
            link.abort()
        self._links.clear()
        for writer in list(self._waiting):
            writer.transport.abort()
        self._waiting.clear()

    async def refuse(self) -> None:
        """Stop listening: new connections are refused. Current ones are kept (see :meth:`cut`)."""
        self._stop_listening()

    async def restore(self) -> None:
        """Clean pass-through again: no latency, data flowing, listening on the same port."""
        self.latency = 0.0
        self._flowing.set()
        if self._server is None:
            await self._listen()

    # --- plumbing ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._on_accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes the listening socket now; connections are ours to manage

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._waiting.add(writer)
        try:
            await self._flowing.wait()  # while dropping, an accepted connection goes nowhere
            upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        finally:
            self._waiting.discard(writer)
        if writer.transport.is_closing():  # cut while it waited
            upstream[1].transport.abort()
            return
        link = _Link((reader, writer), upstream)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pipe(link, reader, upstream[1])),
            asyncio.ensure_future(self._pipe(link, upstream[0], writer)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.abort()

    async def _pipe(self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward one direction: read as fast as it comes, deliver each chunk after the latency."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, sink))
        deliver.add_done_callback(lambda done: _abort_on_failure(done, link))
        try:
            while chunk := await source.read(_CHUNK):
                queue.put_nowait((time.monotonic() + self.latency, chunk))
            queue.put_nowait((time.monotonic() + self.latency, b""))  # EOF, in order
            await deliver
        except OSError:  # reset by a peer: the whole link goes, like a real broken connection
            link.abort()
        finally:
            deliver.cancel()

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter) -> None:
        while True:
            due, chunk = await queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._flowing.wait()
            if not chunk:
                with contextlib.suppress(OSError):
                    if sink.can_write_eof():
                        sink.write_eof()
                return
            sink.write(chunk)
            await sink.drain()
