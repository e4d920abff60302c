"""Error tracking: an unexpected error reaches a Sentry endpoint (a local HTTP server receiving the
envelopes) with correlation id, route and principal, and without secrets or context values."""

from __future__ import annotations

import asyncio
import gzip
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sentry_sdk

from monitoring.sentry import configure_sentry, sentry_enabled
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


class _Envelopes(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sentry_server() -> Iterator[tuple[str, list[bytes]]]:
    _Envelopes.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Envelopes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://publickey@127.0.0.1:{server.server_address[1]}/1", _Envelopes.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
async def platform(
    database_url: str, redis_url: str, kafka_bootstrap: str, sentry_server: tuple[str, list[bytes]]
) -> AsyncIterator[Platform]:
    dsn, _ = sentry_server
    try:
        async with (
            module_database(database_url) as database,
            start_platform(database, redis_url, kafka_bootstrap, run_workers=False, sentry_dsn=dsn) as p,
        ):
            yield p
    finally:
        sentry_sdk.get_client().close(timeout=2)
        configure_sentry(None)


async def _until(received: list[bytes], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not received and loop.time() < deadline:
        await asyncio.to_thread(sentry_sdk.flush, 1.0)


async def test_unexpected_error__sent_with_ids__without_secrets_or_context(
    platform: Platform, sentry_server: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, received = sentry_server
    secret = platform.keys["reader"]

    async def broken(environment: str) -> bool:
        raise RuntimeError(f"read model exploded while holding {secret}")

    monkeypatch.setattr(platform.container.readers, "exists", broken)
    cid = "sentry-" + uuid.uuid4().hex
    transport = httpx.ASGITransport(app=platform.app, raise_app_exceptions=False)  # as a server answers
    async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.test") as client:
        context = {"email": "victim@example.com", "plan": "gold-9137"}
        response = await client.post(
            "/api/v1/evaluate",
            json={"environment": "production", "context": context},
            headers={**platform.auth("reader"), "X-Request-Id": cid, "Cookie": "session=cookie-value-xyz"},
        )
    await _until(received)

    assert sentry_enabled()
    assert response.status_code == 500
    assert len(received) == 1
    raw = received[0].decode()
    assert f'"correlation_id":"{cid}"' in raw.replace(" ", "")
    assert '"route":"/api/v1/evaluate"' in raw.replace(" ", "")
    assert '"principal":"test-reader"' in raw.replace(" ", "")
    assert "RuntimeError" in raw
    for leaked in (secret, "victim@example.com", "gold-9137", "cookie-value-xyz", "Bearer"):
        assert leaked not in raw, leaked


async def test_client_errors__not_sent(platform: Platform, sentry_server: tuple[str, list[bytes]]) -> None:
    _, received = sentry_server
    before = len(received)

    response = await platform.request("POST", "/api/v1/evaluate", role="reader", json={"environment": 1})
    await asyncio.to_thread(sentry_sdk.flush, 2.0)

    assert response.status_code == 422
    assert len(received) == before
