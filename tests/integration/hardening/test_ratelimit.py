"""Rate limits on the real Redis: a burst from one key is limited while another key is served, per
client address when unauthenticated, one bucket shared by every process, and a per-process bucket
when Redis is away (a private redis-server stopped under the limiter)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.ratelimit import RateLimiter
from projections.connection import make_redis
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

LIMITS = {
    "*": {"evaluation": "5/60", "commands": "1000/1", "audit": "3/60"},
    "anonymous": {"evaluation": "2/60", "commands": "3/60", "audit": "1/60"},
}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False, rate_limits=LIMITS) as p,
    ):
        yield p


def _assert_rate_headers(response: httpx.Response, rate_class: str) -> None:
    assert response.headers["RateLimit-Policy"].startswith(f'"{rate_class}";q='), response.headers
    assert response.headers["RateLimit"].startswith(f'"{rate_class}";r='), response.headers


async def test_burst_from_one_key__429_with_retry_after__another_key_still_served(platform: Platform) -> None:
    body = {"environment": "nowhere", "context": {}}
    burst = [await platform.request("POST", "/api/v1/evaluate", role="reader", json=body) for _ in range(7)]
    other = await platform.request("POST", "/api/v1/evaluate", role="writer", json=body)

    statuses = [r.status_code for r in burst]
    assert statuses[:5] == [404] * 5, statuses  # served (an unknown environment) ...
    assert statuses[5:] == [429, 429], statuses  # ... until the key's bucket is empty
    for response in [*burst, other]:
        _assert_rate_headers(response, "evaluation")
    limited = burst[-1]
    assert limited.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit"] == f'"evaluation";r=0;t={limited.headers["Retry-After"]}'
    assert other.status_code == 404 and other.headers["RateLimit"] == '"evaluation";r=4;t=0'


async def test_unauthenticated__limited_per_client_address(platform: Platform) -> None:
    transport = httpx.ASGITransport(app=platform.app, client=("10.9.8.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.test") as other_address:
        burst = [await platform.client.get("/api/v1/flags") for _ in range(4)]
        elsewhere = await other_address.get("/api/v1/flags")

    assert [r.status_code for r in burst] == [401, 401, 401, 429]
    assert elsewhere.status_code == 401
    for response in [*burst, elsewhere]:
        _assert_rate_headers(response, "commands")


async def test_as_of__charged_to_the_audit_class(platform: Platform) -> None:
    body = {"environment": "production", "context": {}}
    path = "/api/v1/evaluate?as_of=2020-01-01T00:00:00Z"
    responses = [await platform.request("POST", path, role="ops", json=body) for _ in range(4)]

    assert [r.status_code for r in responses][-1] == 429
    assert responses[0].status_code == 403  # ops may evaluate but not read the audit log
    _assert_rate_headers(responses[0], "audit")


async def test_two_processes__share_one_bucket_in_redis(redis_url: str) -> None:
    namespace = "rl-" + uuid.uuid4().hex[:8]
    limits = {"*": {"commands": "4/60"}}
    first = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    second = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    try:
        a = [(await first.check("commands", "writer", "key:k1")).allowed for _ in range(3)]
        b = [(await second.check("commands", "writer", "key:k1")).allowed for _ in range(2)]
        other = await second.check("commands", "writer", "key:k2")
    finally:
        await first.close()
        await second.close()

    assert a == [True, True, True]
    assert b == [True, False]
    assert other.allowed and other.shared


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


async def _until_answers(url: str, within: float = 10.0) -> None:
    client = make_redis(url, retries=0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while True:
            try:
                await client.ping()
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)  # waiting for the server to listen, bounded by the deadline
    finally:
        await client.aclose()


async def test_redis_stopped__per_process_bucket_takes_over_and_still_limits(
    private_redis: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = private_redis
    await _until_answers(url)
    limiter = RateLimiter(
        make_redis(url, socket_timeout=0.25, connect_timeout=0.25, retries=0),
        {"*": {"commands": "3/60"}},
        namespace="rl-" + uuid.uuid4().hex[:8],
        fallback_seconds=60,
    )
    try:
        before = await limiter.check("commands", "writer", "key:k")
        process.terminate()
        process.wait(timeout=10)
        during = [await limiter.check("commands", "writer", "key:k") for _ in range(4)]
    finally:
        await limiter.close()

    assert before.allowed and before.shared
    assert [v.shared for v in during] == [False] * 4  # decided in this process, nobody refused for it
    assert [v.allowed for v in during] == [True, True, True, False]


async def test_redis_never_there__requests_still_served_by_the_fallback(platform: Platform) -> None:
    container = platform.container
    original = container.limiter
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    container.limiter = RateLimiter(
        make_redis(dead, socket_timeout=0.2, connect_timeout=0.2, retries=0), LIMITS, namespace="dead"
    )
    try:
        served = await platform.request("GET", "/api/v1/flags", role="admin")
    finally:
        await container.limiter.close()
        container.limiter = original

    assert served.status_code == 200, served.text
    _assert_rate_headers(served, "commands")
