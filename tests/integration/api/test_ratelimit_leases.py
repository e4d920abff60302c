"""Rate-limit leases on the real Redis: a busy key costs one Redis call per lease, not per request,
and two processes leasing from one bucket never serve more than its quota together."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from api.ratelimit import RateLimiter
from projections.connection import make_redis

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = make_redis(redis_url, retries=0)
    try:
        yield client
    finally:
        await client.aclose()


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_a_busy_key__one_redis_call_per_lease_not_per_request(redis: Redis, redis_url: str) -> None:
    limiter = RateLimiter(make_redis(redis_url, retries=0), {"*": {"evaluation": "20000/1"}}, namespace=_ns())
    try:
        before = await _script_calls(redis)
        verdicts = [await limiter.check("evaluation", "reader", "key:busy") for _ in range(2000)]
        calls = await _script_calls(redis) - before
    finally:
        await limiter.close()

    assert all(v.allowed and v.shared for v in verdicts)
    # leases double from 1 up to 1,000 tokens (5 % of the bucket): 2,000 requests in about a dozen calls
    assert calls <= 20, calls


@pytest.mark.parametrize("quota", [40, 400])
async def test_two_processes_leasing__never_more_than_the_quota_together(redis_url: str, quota: int) -> None:
    namespace = _ns()
    limits = {"*": {"commands": f"{quota}/3600"}}  # no noticeable refill during the test
    first = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    second = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    allowed = 0
    try:
        for i in range(quota * 2):
            limiter = first if i % 3 else second  # interleaved, unevenly
            allowed += (await limiter.check("commands", "writer", "key:shared")).allowed
    finally:
        await first.close()
        await second.close()

    assert quota - quota // 10 <= allowed <= quota, allowed  # leases held by the other process are the gap


async def test_small_quota__decided_in_redis_request_by_request(redis_url: str) -> None:
    namespace = _ns()
    limits = {"*": {"commands": "5/3600"}}
    first = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    second = RateLimiter(make_redis(redis_url, retries=0), limits, namespace=namespace)
    try:
        answers = [await (first, second)[i % 2].check("commands", "writer", "key:k") for i in range(8)]
    finally:
        await first.close()
        await second.close()

    assert [a.allowed for a in answers] == [True] * 5 + [False] * 3
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]


def _ns() -> str:
    return "rl-" + uuid.uuid4().hex[:8]
