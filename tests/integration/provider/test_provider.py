"""The in-process OpenFeature provider on the real platform: it loads the environment from the real Redis,
follows changes (PROVIDER_CONFIGURATION_CHANGED), serves its last snapshot while Redis is away
(PROVIDER_STALE, then PROVIDER_READY after a resync), reports an unreachable Redis (PROVIDER_ERROR)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from flagstream_openfeature import EvaluationCounter, FlagstreamProvider
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from tests.faults.proxy import FaultProxy, free_port
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

ENV = "production"
CONFIG: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["vip"]}],
    "default": {"variation": "off"},
}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


class Events:
    """Provider events seen by a client's handlers (called from the provider's thread)."""

    def __init__(self, client: OpenFeatureClient) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[ProviderEvent, list[str]]] = []
        for event in ProviderEvent:
            client.add_handler(event, self._recorder(event))

    def _recorder(self, event: ProviderEvent) -> Callable[[EventDetails], None]:
        def record(details: EventDetails) -> None:
            with self._lock:
                self.seen.append((event, list(details.flags_changed or [])))

        return record

    async def wait_for(
        self, event: ProviderEvent, flag_key: str | None = None, within: float = 10.0, times: int = 1
    ) -> None:
        deadline = time.monotonic() + within
        while self.count(event, flag_key) < times:
            assert time.monotonic() < deadline, f"no {event} (flag {flag_key}) within {within}s: {self.seen}"
            await asyncio.sleep(0.02)

    def count(self, event: ProviderEvent, flag_key: str | None = None) -> int:
        with self._lock:
            return sum(e is event and (flag_key is None or flag_key in keys) for e, keys in self.seen)

    def has(self, event: ProviderEvent, flag_key: str | None = None) -> bool:
        return self.count(event, flag_key) > 0


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _domain(
    provider: FlagstreamProvider, *, wait: bool = True
) -> AsyncIterator[tuple[OpenFeatureClient, Events]]:
    """A client of a domain of its own, its handlers registered before the provider starts (off the
    event loop: a proxy serving the provider's Redis connection runs on this loop)."""
    domain = "fs-" + uuid.uuid4().hex[:8]
    client = api.get_client(domain)
    events = Events(client)
    await asyncio.to_thread(api.set_provider_and_wait if wait else api.set_provider, provider, domain)
    try:
        yield client, events
    finally:
        await asyncio.to_thread(provider.shutdown)


async def _flag(platform: Platform) -> str:
    key = "p-" + uuid.uuid4().hex[:10]
    created = await platform.request("POST", "/api/v1/flags", json={"key": key})
    put = await platform.request("PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json=CONFIG)
    assert created.status_code == 201 and put.json()["projected"] is True, put.text
    return key


async def _disable(platform: Platform, key: str) -> None:
    response = await platform.request(
        "POST", f"/api/v1/flags/{key}/environments/{ENV}/disable?wait=projected"
    )
    assert response.json()["projected"] is True, response.text


async def test_provider__loads_evaluates_and_follows_changes(platform: Platform) -> None:
    key = await _flag(platform)
    assert platform.settings.redis_url is not None
    provider = FlagstreamProvider(
        platform.settings.redis_url, ENV, namespace=platform.settings.redis_namespace, poll_interval=0.2
    )
    async with _domain(provider) as (client, events):
        counter = EvaluationCounter()
        client.add_hooks([counter])

        vip = client.get_boolean_details(key, False, EvaluationContext("vip"))
        other = client.get_boolean_details(key, True, EvaluationContext("someone"))
        missing = client.get_boolean_details("no-such-flag", True, EvaluationContext("vip"))
        wrong_type = client.get_string_details(key, "x", EvaluationContext("vip"))
        await _disable(platform, key)
        await events.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, key)
        disabled = client.get_boolean_details(key, True, EvaluationContext("vip"))

        assert vip.error_code is None, vip.error_message
        assert client.get_provider_status() is ProviderStatus.READY and events.has(
            ProviderEvent.PROVIDER_READY
        )
        assert (vip.value, vip.reason, vip.variant, vip.flag_metadata) == (
            True,
            Reason.TARGETING_MATCH,
            "on",
            {"version": 2},
        )
        assert (other.value, other.reason, other.variant) == (False, Reason.DEFAULT, "off")
        assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
        assert (wrong_type.value, wrong_type.error_code) == ("x", ErrorCode.TYPE_MISMATCH)
        assert (disabled.value, disabled.reason, disabled.flag_metadata["version"]) == (
            False,
            Reason.DISABLED,
            3,
        )
        assert counter.total == 5
        assert counter.counts[(key, "TARGETING_MATCH", None)] == 1
        assert (
            sum(
                n for (k, reason, _), n in counter.counts.items() if k == "no-such-flag" and reason == "ERROR"
            )
            == 1
        )


async def test_provider__redis_away__stale_last_snapshot_then_ready_and_resynced(
    platform: Platform, redis_url: str
) -> None:
    key = await _flag(platform)
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    async with FaultProxy(host, int(port)) as proxy:
        through = f"redis://{proxy.address}/{redis_url.rsplit('/', 1)[1]}"
        provider = FlagstreamProvider(
            through, ENV, namespace=platform.settings.redis_namespace, poll_interval=0.2
        )
        async with _domain(provider) as (client, events):
            assert client.get_boolean_value(key, False, EvaluationContext("vip")) is True

            await proxy.refuse()
            proxy.cut()
            await events.wait_for(ProviderEvent.PROVIDER_STALE)
            await _disable(platform, key)  # written to the real Redis, which the provider cannot reach
            stale = client.get_boolean_details(key, False, EvaluationContext("vip"))
            status_while_away = client.get_provider_status()
            ready_before = events.count(ProviderEvent.PROVIDER_READY)
            await proxy.restore()
            await events.wait_for(ProviderEvent.PROVIDER_READY, times=ready_before + 1)  # resynced, ready
            fresh = client.get_boolean_details(key, True, EvaluationContext("vip"))

            assert (stale.value, stale.reason) == (True, Reason.TARGETING_MATCH)  # the last snapshot
            assert status_while_away is ProviderStatus.STALE
            assert events.has(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, key)
            await _until(lambda: client.get_provider_status() is ProviderStatus.READY)
            assert (fresh.value, fresh.reason) == (False, Reason.DISABLED)


async def test_provider__redis_unreachable_at_start__provider_error() -> None:
    provider = FlagstreamProvider(f"redis://127.0.0.1:{free_port()}/0", ENV)
    async with _domain(provider, wait=False) as (client, events):
        await events.wait_for(ProviderEvent.PROVIDER_ERROR)
        details = client.get_boolean_details("any", True)

        assert client.get_provider_status() is ProviderStatus.ERROR
        assert (details.value, details.reason) == (True, Reason.ERROR)


async def test_provider__flag_metadata__in_flag_metadata_beside_the_version(platform: Platform) -> None:
    key = "p-" + uuid.uuid4().hex[:10]
    metadata = {"team": "checkout", "ticket": 7, "beta": True}
    created = await platform.request("POST", "/api/v1/flags", json={"key": key, "metadata": metadata})
    put = await platform.request("PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json=CONFIG)
    assert created.status_code == 201 and put.json()["projected"] is True, put.text
    assert platform.settings.redis_url is not None
    provider = FlagstreamProvider(
        platform.settings.redis_url, ENV, namespace=platform.settings.redis_namespace, poll_interval=0.2
    )
    async with _domain(provider) as (client, _events):
        details = client.get_boolean_details(key, False, EvaluationContext("vip"))

    assert details.error_code is None, details.error_message
    assert details.flag_metadata == {**metadata, "version": 2}
