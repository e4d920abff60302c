"""Evaluation does bounded work: unknown environments open no reader and make no metric series,
readers are LRU-bounded, ``?as_of=`` needs the audit permission, runs off the event loop and is
bounded in concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import api.routes.evaluate as evaluate_route
from monitoring.metrics import REGISTRY
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

VARIATIONS = [{"key": "on", "value": True}, {"key": "off", "value": False}]
CONFIG: dict[str, Any] = {"enabled": True, "default": {"variation": "on"}, "off_variation": "off"}


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(
            database, redis_url, kafka_bootstrap, reader_max_environments=2, as_of_max_concurrency=1
        ) as p,
    ):
        yield p


async def _configured(platform: Platform, environment: str) -> str:
    key = "b-" + uuid.uuid4().hex[:10]
    created = await platform.request(
        "POST",
        "/api/v1/flags",
        json={"key": key, "name": key, "variations": VARIATIONS},
    )
    assert created.status_code == 201, created.text
    put = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/{environment}?wait=projected", json=CONFIG
    )
    assert put.status_code == 200 and put.json()["projected"] is True, put.text
    return key


async def test_unknown_environment__404__no_reader__no_metric_series(platform: Platform) -> None:
    name = "made-up-" + uuid.uuid4().hex[:8]

    response = await platform.request(
        "POST", "/api/v1/evaluate", role="reader", json={"environment": name, "flags": ["x"]}
    )

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_environment"
    assert name not in platform.container.readers.readers
    labels = {value for family in REGISTRY.collect() for s in family.samples for value in s.labels.values()}
    assert name not in labels


async def test_readers__bounded_lru__every_environment_still_served(platform: Platform) -> None:
    environments = [f"lru-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    keys = [await _configured(platform, env) for env in environments]

    answers = []
    for env, key in zip([*environments, environments[0]], [*keys, keys[0]], strict=True):
        body = {"environment": env}
        response = await platform.request("POST", "/api/v1/evaluate", role="reader", json=body)
        ok = response.status_code == 200
        answers.append(response.json()["results"][key]["value"] if ok else response.text)
        assert len(platform.container.readers.readers) <= 2

    assert answers == [True, True, True, True]
    assert set(platform.container.readers.readers) == {environments[2], environments[0]}


async def test_as_of__writer_without_audit_permission__403(platform: Platform) -> None:
    response = await platform.request(
        "POST",
        "/api/v1/evaluate?as_of=2020-01-01T00:00:00Z",
        role="writer",
        json={"environment": "production"},
    )

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


async def test_as_of__runs_in_a_worker_thread_and_answers(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await _configured(platform, "asof-env")
    threads: list[int] = []
    original = evaluate_route.evaluate_as_of  # type: ignore[attr-defined]

    async def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return await original(*args, **kwargs)

    monkeypatch.setattr(evaluate_route, "evaluate_as_of", recording)
    response = await platform.request(
        "POST",
        "/api/v1/evaluate?as_of=2999-01-01T00:00:00Z",
        role="reader",
        json={"environment": "asof-env", "flags": [key]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["results"][key]["value"] is True
    assert threads and threads[0] != threading.get_ident()  # not the API's event-loop thread


async def test_as_of__all_slots_busy__503_with_retry_after(platform: Platform) -> None:
    slots = platform.container.as_of_slots
    await slots.acquire()  # the one slot of this process is taken
    try:
        response = await platform.request(
            "POST",
            "/api/v1/evaluate?as_of=2020-01-01T00:00:00Z",
            role="reader",
            json={"environment": "production"},
        )
    finally:
        slots.release()

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "as_of_busy"
    assert "Retry-After" in response.headers
