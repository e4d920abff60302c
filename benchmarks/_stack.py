"""What the HTTP benchmarks (``spine.py``, ``http.py``) share: a throw-away local stack, and waiting
until a server they started answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["local_stack", "wait_http"]


@contextlib.contextmanager
def local_stack(prefix: str) -> Iterator[dict[str, str]]:
    """``DATABASE_URL``, ``REDIS_URL`` and ``KAFKA_BOOTSTRAP_SERVERS`` of a stack started in a temporary
    folder (Postgres with fsync on), or of the servers those variables already name; stopped after."""
    from runtime.devstack import Stack

    with (
        tempfile.TemporaryDirectory(prefix=prefix) as folder,
        Stack.start(
            Path(folder),
            durable=True,
            database_url=os.environ.get("DATABASE_URL"),
            redis_url=os.environ.get("REDIS_URL"),
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        ) as stack,
    ):
        yield stack.environment()


async def wait_http(url: str, within: float = 60.0) -> None:
    """Until ``url`` answers 200, polling every 0.1 s; ``TimeoutError`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling a server's liveness, bounded
    raise TimeoutError(f"{url} did not answer within {within}s")
