"""Serve the platform's ASGI app over real HTTP (uvicorn on a free port) for clients that need a socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

__all__ = ["serve_http"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_http(app: Any, within: float = 10.0) -> AsyncIterator[str]:
    """The base URL of ``app`` served by uvicorn in this event loop (its lifespan already ran)."""
    port = _free_port()
    # log_config=None: uvicorn leaves the logging configuration (and the handlers other tests check) alone.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(within):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
