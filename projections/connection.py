"""The one place Redis clients of the read side are built (explicit timeouts and retries).

redis-py 8 changed its default timeouts and retries; the read side sets them explicitly.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

__all__ = ["make_redis", "require_text_client"]


def make_redis(
    url: str, *, socket_timeout: float = 5.0, connect_timeout: float = 2.0, retries: int = 1
) -> Redis:
    """An asyncio client that answers ``str`` values, bounded in time, retrying briefly."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        health_check_interval=0,
    )


def require_text_client(client: Redis) -> Redis:
    """Refuse a client that answers bytes: the read side compares and parses ``str`` values."""
    if not client.connection_pool.connection_kwargs.get("decode_responses", False):
        raise ValueError("the read side needs a Redis client with decode_responses=True (see make_redis)")
    return client
