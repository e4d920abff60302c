"""``/readyz`` and ``/metrics`` of the API on the real servers: degraded while Kafka or a relay fails,
with the API's breakers and each relay's last report named."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.container import POSTGRES_BREAKER, Container
from events.deadletters import DeadLetterStore, NewDeadLetter
from events.relay.status import RelayStatusWriter
from events.store.db import create_pool
from events.store.keys import ApiKeyStore
from runtime.settings import load_settings
from tests.integration.platform import module_database

pytestmark = pytest.mark.integration


def _dead_port() -> int:
    """A port nothing listens on (bound then released: connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Api:
    def __init__(
        self, client: httpx.AsyncClient, secret: str, container: Container, database_url: str
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.container = container
        self.database_url = database_url

    async def create_flag(self) -> httpx.Response:
        key = "r-" + uuid.uuid4().hex[:12]
        return await self.client.post("/api/v1/flags", json={"key": key, "name": key}, headers=self.headers)


@pytest.fixture
async def api_without_kafka(database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The API against real Postgres and Redis, its Kafka bootstrap a port where nothing listens."""
    async with module_database(database_url) as database:
        settings = load_settings(
            database_url=database,
            redis_url=redis_url,
            kafka_bootstrap_servers=f"127.0.0.1:{_dead_port()}",
            redis_namespace=f"fs-{uuid.uuid4().hex[:10]}",
            log_json=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            container: Container = app.state.container
            secret = (await ApiKeyStore(container.pool).create("ready-admin", "admin"))[1]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.test") as client:
                yield Api(client, secret, container, database)


async def _readyz(api: Api) -> tuple[int, dict[str, Any]]:
    response = await api.client.get("/readyz", headers=api.headers)  # details need an ops/admin key
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_readyz__kafka_unreachable__200_degraded_and_commands_still_accepted(
    api_without_kafka: Api,
) -> None:
    created = await api_without_kafka.create_flag()

    code, body = await _readyz(api_without_kafka)

    assert created.status_code == 201, created.text
    assert code == 200, body
    assert body["status"] == "degraded"
    assert body["checks"]["kafka"].startswith("unreachable")
    assert body["checks"]["postgres"] == "ok" and body["checks"]["redis"] == "ok"
    assert body["checks"][f"breaker:{POSTGRES_BREAKER}"] == "closed"
    # nothing publishes, so the new flag is not projected: a consequence of Kafka, still only degraded
    assert body["checks"]["projection"].startswith("behind")
    assert set(body["not_ready"]) == set(body["degraded"]) == {"kafka", "projection"}


async def test_readyz__relay_reports_open_breaker__degraded_names_relay_and_backlog(
    api_without_kafka: Api,
) -> None:
    pool = await create_pool(api_without_kafka.database_url, min_size=1, max_size=1)
    try:
        writer = RelayStatusWriter(pool, "flag-events")
        await writer.update(
            breaker_state="open",
            backlog=42,
            oldest_unpublished_at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
            last_error="KafkaConnectionError: broker down",
        )
        code, body = await _readyz(api_without_kafka)
        await writer.update(breaker_state="closed", backlog=0, oldest_unpublished_at=None, last_error=None)
        _, after = await _readyz(api_without_kafka)
    finally:
        await pool.close()

    assert code == 200 and body["status"] == "degraded"
    relay = body["checks"]["relay:flag-events"]
    assert "breaker open" in relay and "backlog 42" in relay and "KafkaConnectionError" in relay
    assert "relay:flag-events" in body["degraded"]
    assert after["checks"]["relay:flag-events"] == "ok"


async def test_readyz__api_breaker_open__503_not_ready(api_without_kafka: Api) -> None:
    breaker = api_without_kafka.container.breakers[POSTGRES_BREAKER]
    await _readyz(api_without_kafka)  # the ops key is authenticated (cached) before the breaker opens

    async def fail() -> None:
        raise ConnectionResetError("simulated: connection lost")

    for _ in range(breaker.fail_max):
        with pytest.raises(ConnectionResetError):
            await breaker.call(fail)
    code, body = await _readyz(api_without_kafka)
    refused = await api_without_kafka.create_flag()

    assert code == 503 and body["status"] == "not_ready"
    assert body["checks"][f"breaker:{POSTGRES_BREAKER}"].startswith("open (trial in")
    assert f"breaker:{POSTGRES_BREAKER}" in body["not_ready"]
    assert f"breaker:{POSTGRES_BREAKER}" not in body["degraded"]
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert refused.json()["error"]["code"] in {"circuit_open", "service_unavailable"}


def _gauge(text: str, error_class: str) -> float | None:
    prefix = f'flagstream_dead_letters{{error_class="{error_class}",stage="projector"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


async def _park(store: DeadLetterStore, error_class: str) -> None:
    await store.park(
        NewDeadLetter(
            stage="projector",
            flag_key="m-" + uuid.uuid4().hex[:10],
            error_class=error_class,
            error_message="cannot apply",
            version=1,
            event_id=uuid.uuid4(),
        )
    )


async def test_metrics__letters_parked_between_scrapes__gauges_refreshed_at_most_every_5s(
    api_without_kafka: Api,
) -> None:
    store = DeadLetterStore(api_without_kafka.container.pool)
    error_class = "MetricsProbe" + uuid.uuid4().hex[:8]
    await _park(store, error_class)

    first = await api_without_kafka.client.get("/metrics")
    await _park(store, error_class)
    second = await api_without_kafka.client.get("/metrics")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 12.0
    refreshed = second.text
    while _gauge(refreshed, error_class) != 2.0 and loop.time() < deadline:
        await asyncio.sleep(0.5)  # polling the scrape until the 5 s refresh interval has passed
        refreshed = (await api_without_kafka.client.get("/metrics")).text

    assert _gauge(first.text, error_class) == 1.0
    assert _gauge(second.text, error_class) == 1.0  # scraped again at once: not re-read from Postgres
    assert _gauge(refreshed, error_class) == 2.0
    assert 'flagstream_db_pool_connections_max{pool="api"}' in second.text
