"""Read-side Redis clients carry redis-py's asyncio retry class (a sync one warns, then errors)."""

from __future__ import annotations

import warnings

from redis.asyncio.retry import Retry as AsyncRetry

from projections.connection import make_redis
from runtime.settings import Settings
from workers.projector import make_projector_redis


def test_make_redis__builds_client__with_asyncio_retry_and_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = make_redis("redis://127.0.0.1:1/0", retries=3)
    retry = client.connection_pool.connection_kwargs["retry"]
    assert isinstance(retry, AsyncRetry)
    assert retry.get_retries() == 3


def test_make_projector_redis__builds_client__with_asyncio_retry_and_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = make_projector_redis("redis://127.0.0.1:1/0", Settings())
    assert isinstance(client.connection_pool.connection_kwargs["retry"], AsyncRetry)
