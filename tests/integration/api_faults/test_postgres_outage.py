"""Postgres killed under the API and started again (a private stack): commands are ``503`` with
``Retry-After`` while it is down, the API's breaker opens, nothing is half-written, and service
resumes by itself once Postgres is back."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from api.container import POSTGRES_BREAKER
from events.store.db import create_pool
from runtime.devstack import Stack
from tests.integration.platform import Platform, start_platform

pytestmark = pytest.mark.integration

RECOVERY_BOUND_SECONDS = 60.0


async def _count_events(database_url: str) -> int:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        return int(await pool.fetchval("SELECT count(*) FROM events"))
    finally:
        await pool.close()


async def _create(platform: Platform, key: str) -> httpx.Response:
    return await platform.request("POST", "/api/v1/flags", json={"key": key, "name": key})


async def _create_until_accepted(
    platform: Platform, within: float
) -> tuple[httpx.Response, list[str], float]:
    """Create new flags until one is accepted; returns it, the keys refused on the way, and the time taken."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused: list[str] = []
    while True:
        key = "pg-" + uuid.uuid4().hex[:12]
        response = await _create(platform, key)
        if response.status_code != 503 or loop.time() - started > within:
            return response, refused, loop.time() - started
        assert "Retry-After" in response.headers
        refused.append(key)
        await asyncio.sleep(0.2)  # a client honouring a short back-off between attempts


async def test_postgres_killed_and_restarted__503_retry_after_breaker_opens_nothing_half_written_resumes(
    private_stack: Stack,
) -> None:
    assert private_stack.postgres is not None
    async with start_platform(
        private_stack.database_url, private_stack.redis_url, private_stack.kafka_bootstrap, run_workers=False
    ) as platform:
        breaker = platform.container.breakers[POSTGRES_BREAKER]
        accepted_before = await _create(platform, "pg-before-" + uuid.uuid4().hex[:8])
        assert accepted_before.status_code == 201, accepted_before.text
        events_before = await _count_events(private_stack.database_url)

        await asyncio.to_thread(private_stack.postgres.kill)
        refused: list[httpx.Response] = []
        refused_keys: list[str] = []
        for _ in range(breaker.fail_max + 2):
            key = "pg-down-" + uuid.uuid4().hex[:8]
            refused.append(await _create(platform, key))
            refused_keys.append(key)
        breaker_state = breaker.state
        ready_down = await platform.client.get("/readyz", headers=platform.auth("admin"))
        # a key never used before (not in the auth cache): the lookup fails, which is a 503, not a 401
        uncached_auth = await platform.request("GET", "/api/v1/flags", role="reader")

        await asyncio.to_thread(private_stack.postgres.start)
        accepted_after, refused_while_recovering, recovery_seconds = await _create_until_accepted(
            platform, RECOVERY_BOUND_SECONDS
        )
        ready_after = await platform.client.get("/readyz", headers=platform.auth("admin"))
        events_after = await _count_events(private_stack.database_url)
        stored_refused = [
            key for key in refused_keys + refused_while_recovering if await platform.store.read_stream(key)
        ]

    assert [r.status_code for r in refused] == [503] * len(refused)
    assert all(r.headers.get("Retry-After") for r in refused)
    assert refused[-1].json()["error"]["code"] == "circuit_open"
    assert breaker_state == "open"
    assert ready_down.status_code == 503
    assert ready_down.json()["status"] == "not_ready"
    assert {"postgres", f"breaker:{POSTGRES_BREAKER}"} <= set(ready_down.json()["not_ready"])
    assert uncached_auth.status_code == 503, uncached_auth.text
    assert "Retry-After" in uncached_auth.headers
    assert accepted_after.status_code == 201, accepted_after.text
    assert recovery_seconds < RECOVERY_BOUND_SECONDS
    assert breaker.state == "closed"
    assert ready_after.json()["checks"]["postgres"] == "ok"
    assert ready_after.json()["checks"][f"breaker:{POSTGRES_BREAKER}"] == "closed"
    assert stored_refused == []  # no refused command left anything behind
    assert events_after == events_before + len(accepted_after.json()["event_ids"])
    print(
        f"postgres outage: recovered {recovery_seconds:.1f}s after restart, "
        f"{len(refused) + len(refused_while_recovering)} commands refused with 503, 0 half-written"
    )
