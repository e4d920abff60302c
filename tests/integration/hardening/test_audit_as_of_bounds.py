"""Audit reads ``?as_of=`` (a flag as it was at an instant) replay the Kafka log: they run in a worker
thread with its own event loop, never on the API's, and share the bound of as-of evaluations
(``as_of_max_concurrency`` per process; ``503 as_of_busy`` + ``Retry-After`` beyond)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import api.container as container_module
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, as_of_max_concurrency=1) as p,
    ):
        yield p


async def _published_flag(platform: Platform) -> str:
    key = "ao-" + uuid.uuid4().hex[:10]
    created = await platform.request("POST", "/api/v1/flags?wait=projected", json={"key": key, "name": key})
    assert created.status_code == 201 and created.json()["projected"] is True, created.text
    return key


async def test_flag_as_of__replays_in_a_worker_thread__and_answers(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await _published_flag(platform)
    threads: list[int] = []
    original = container_module.flag_as_of  # type: ignore[attr-defined]

    async def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return await original(*args, **kwargs)

    monkeypatch.setattr(container_module, "flag_as_of", recording)
    response = await platform.request("GET", f"/api/v1/flags/{key}", params={"as_of": FUTURE}, role="reader")

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    assert threads and threads[0] != threading.get_ident()  # not the API's event-loop thread


async def test_flag_as_of__replay_held__the_api_loop_still_answers(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a replay that blocks its thread until released, another request is answered meanwhile
    (and only then is the replay released: on the API's loop it could never be, and would time out)."""
    key = await _published_flag(platform)
    started, released = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    original = container_module.flag_as_of  # type: ignore[attr-defined]

    async def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        released_in_time.append(released.wait(timeout=5))  # blocks whichever thread (and loop) runs it
        return await original(*args, **kwargs)

    monkeypatch.setattr(container_module, "flag_as_of", held)
    replay = asyncio.create_task(
        platform.request("GET", f"/api/v1/flags/{key}", params={"as_of": FUTURE}, role="reader")
    )
    try:
        assert await asyncio.to_thread(started.wait, 10)
        health = await asyncio.wait_for(platform.request("GET", "/healthz"), 5)
        released.set()  # only once the health check was answered
    finally:
        released.set()
    answer = await asyncio.wait_for(replay, 30)

    assert health.status_code == 200
    assert released_in_time == [True]
    assert answer.status_code == 200, answer.text


async def test_flag_as_of__all_slots_busy__503_as_of_busy_with_retry_after(platform: Platform) -> None:
    key = await _published_flag(platform)
    slots = platform.container.as_of_slots
    await slots.acquire()  # the one slot of this process is taken
    try:
        response = await platform.request(
            "GET", f"/api/v1/flags/{key}", params={"as_of": FUTURE}, role="reader"
        )
    finally:
        slots.release()

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "as_of_busy"
    assert "Retry-After" in response.headers


async def test_flag_as_of__client_gives_up__slot_held_until_the_replay_ends(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled request does not free its slot while its thread still replays (the bound holds)."""
    key = await _published_flag(platform)
    started, released = threading.Event(), threading.Event()
    original = container_module.flag_as_of  # type: ignore[attr-defined]

    async def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        released.wait(timeout=10)
        return await original(*args, **kwargs)

    monkeypatch.setattr(container_module, "flag_as_of", held)
    slots = platform.container.as_of_slots
    replay = asyncio.create_task(
        platform.request("GET", f"/api/v1/flags/{key}", params={"as_of": FUTURE}, role="reader")
    )
    try:
        assert await asyncio.to_thread(started.wait, 10)
        replay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await replay
        held_after_cancel = slots.locked()
    finally:
        released.set()
    await asyncio.wait_for(slots.acquire(), 10)  # freed once the thread's replay has ended
    slots.release()

    assert held_after_cancel
