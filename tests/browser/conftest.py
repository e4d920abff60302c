"""Browser tests of the console: Debian's Chromium driven by Playwright against the real platform.

One platform (Postgres, Redis, Kafka, relay, projector) and one browser per module; the API is served
over real HTTP by uvicorn on a free port. Never ``playwright install``: the browser is ``/usr/bin/chromium``
(``.ci/run`` installs the Debian package).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.integration.platform import Platform, module_database, start_platform

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, rate_limits_enabled=False) as p,
    ):
        yield p


@pytest.fixture(scope="module")
async def base_url(platform: Platform) -> AsyncIterator[str]:
    """The platform's app on a real HTTP port (its lifespan is already running in the platform)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(platform.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not server.started:
        if task.done() or loop.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.02)  # polling the server's started flag, bounded
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before any browser starts
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
