"""The evaluation fast lane answers exactly as the routes do, on the real stack.

Two API applications over the same database, read model and Redis: one with the fast lane, one
without. Every request below is sent to both and the answers compared (status, body, ETag, headers
present); the fast lane must have answered the ordinary ones itself and handed the others on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.fastlane import EvaluationFastLane
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

ENV = "production"
FLAG = "fast-lane-rollout"
PLAIN = "fast-lane-plain"
_ROLLOUT: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "rules": [
        {
            "id": "na",
            "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        }
    ],
    "default": {"variation": "off"},
}
# not ASCII: the bulk body (and so its ETag) must be the same bytes whichever path serialised it
_METADATA = {"owner": "Zoë ✓ 検証", "tier": 1}
_PLAIN: dict[str, Any] = {"enabled": True, "off_variation": "off", "default": {"variation": "on"}}
LIMITS = {
    "*": {"evaluation": "20000/1", "commands": "2000/1", "audit": "200/1"},
    "ops": {"evaluation": "4/60", "commands": "2000/1", "audit": "200/1"},
}
_CONTEXT = {"targetingKey": "user-42", "country": "US", "email": "a@example.com"}


@dataclass
class Pair:
    platform: Platform  # its app has the fast lane
    routes_only: httpx.AsyncClient  # an app of the same settings without it

    @property
    def lane(self) -> EvaluationFastLane:
        return _find_lane(self.platform.app)


def _find_lane(app: Any) -> EvaluationFastLane:
    lane = app.fast_lane
    assert isinstance(lane, EvaluationFastLane), "the app has no fast lane"
    return lane


@pytest.fixture(scope="module")
async def pair(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Pair]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, rate_limits=LIMITS) as platform,
    ):
        for key, config in ((FLAG, _ROLLOUT), (PLAIN, _PLAIN)):
            body = {"key": key, "name": key, "metadata": _METADATA if key == PLAIN else {}}
            created = await platform.request("POST", "/api/v1/flags", json=body)
            assert created.status_code == 201, created.text
            path = f"/api/v1/flags/{key}/environments/{ENV}?wait=projected"
            configured = await platform.request("PUT", path, json=config)
            assert configured.status_code == 200, configured.text
        slow_app = create_app(platform.settings.model_copy(update={"evaluation_fast_lane": False}))
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(slow_app.router.lifespan_context(slow_app))
            transport = httpx.ASGITransport(app=slow_app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://flagstream.test")
            )
            yield Pair(platform, client)


def _evaluate(flags: list[str] | None = None, environment: str = ENV, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"environment": environment, "context": _CONTEXT, **extra}
    if flags is not None:
        body["flags"] = flags
    return body


_OFREP = {"X-Flagstream-Environment": ENV}
_NOWHERE = {"X-Flagstream-Environment": "nowhere"}
# (name, path, extra headers, JSON body or raw bytes, answered by the fast lane)
CASES: list[tuple[str, str, dict[str, str], Any, bool]] = [
    ("one flag", "/api/v1/evaluate", {}, _evaluate([FLAG]), True),
    ("every flag", "/api/v1/evaluate", {}, _evaluate(), True),
    ("an unknown flag among them", "/api/v1/evaluate", {}, _evaluate([FLAG, "nope"]), True),
    ("no targeting key", "/api/v1/evaluate", {}, {"environment": ENV, "context": {"country": "US"}}, True),
    (
        "lax type refused",
        "/api/v1/evaluate",
        {},
        _evaluate(flags=None, environment=ENV) | {"flags": "x"},
        False,
    ),
    ("unknown field", "/api/v1/evaluate", {}, _evaluate([FLAG], extra_field=1), False),
    ("unknown environment", "/api/v1/evaluate", {}, _evaluate([FLAG], environment="nowhere"), False),
    ("malformed JSON", "/api/v1/evaluate", {}, b'{"environment": ', False),
    ("environment not a name", "/api/v1/evaluate", {}, _evaluate([FLAG], environment="Prod!"), False),
    ("environment with a new line", "/api/v1/evaluate", {}, _evaluate([FLAG], environment=ENV + "\n"), False),
    ("environment not text", "/api/v1/evaluate", {}, {"environment": 1, "context": {}}, False),
    ("no environment", "/api/v1/evaluate", {}, {"context": _CONTEXT}, False),
    ("context not an object", "/api/v1/evaluate", {}, {"environment": ENV, "context": [1]}, False),
    ("a flag key not text", "/api/v1/evaluate", {}, _evaluate([FLAG, 7]), False),  # type: ignore[list-item]
    ("too many flags", "/api/v1/evaluate", {}, _evaluate([FLAG] * 1001), False),
    ("a thousand flags", "/api/v1/evaluate", {}, _evaluate([FLAG] * 1000), True),
    ("flags null", "/api/v1/evaluate", {}, _evaluate(None) | {"flags": None}, True),
    ("not an object", "/api/v1/evaluate", {}, [_evaluate([FLAG])], False),
    (
        "integer beyond 64 bits",
        "/api/v1/evaluate",
        {},
        b'{"environment": "production", "context": {"n": 1' + b"0" * 30 + b"}}",
        False,
    ),
    (
        "integer beyond 64 bits, nested",
        "/api/v1/evaluate",
        {},
        {"environment": ENV, "context": {"targetingKey": "u", "o": {"n": 10**30}, "l": [2**64]}},
        False,
    ),
    ("an 18-digit integer", "/api/v1/evaluate", {}, {"environment": ENV, "context": {"n": 10**17}}, True),
    (
        "a nested 18-digit integer",
        "/api/v1/evaluate",
        {},
        {"environment": ENV, "context": {"o": [10**17]}},
        True,
    ),
    ("ofrep one", f"/ofrep/v1/evaluate/flags/{FLAG}", _OFREP, {"context": _CONTEXT}, True),
    ("ofrep static", f"/ofrep/v1/evaluate/flags/{PLAIN}", _OFREP, {"context": {}}, True),
    ("ofrep empty body", f"/ofrep/v1/evaluate/flags/{PLAIN}", _OFREP, b"", True),
    ("ofrep unknown flag", "/ofrep/v1/evaluate/flags/nope", _OFREP, {"context": _CONTEXT}, True),
    (
        "ofrep no targeting key",
        f"/ofrep/v1/evaluate/flags/{FLAG}",
        _OFREP,
        {"context": {"country": "US"}},
        True,
    ),
    ("ofrep bulk", "/ofrep/v1/evaluate/flags", _OFREP, {"context": _CONTEXT}, True),
    ("ofrep bulk no targeting key", "/ofrep/v1/evaluate/flags", _OFREP, {"context": {"country": "US"}}, True),
    ("ofrep unknown environment", f"/ofrep/v1/evaluate/flags/{FLAG}", _NOWHERE, {"context": _CONTEXT}, False),
    ("ofrep bulk unknown environment", "/ofrep/v1/evaluate/flags", _NOWHERE, {"context": _CONTEXT}, False),
    ("ofrep no environment", f"/ofrep/v1/evaluate/flags/{FLAG}", {}, {"context": _CONTEXT}, False),
    ("ofrep context not an object", f"/ofrep/v1/evaluate/flags/{FLAG}", _OFREP, {"context": [1]}, False),
    ("ofrep not JSON", f"/ofrep/v1/evaluate/flags/{FLAG}", _OFREP, b"{nope", False),
    (
        "ofrep integer beyond 64 bits",
        f"/ofrep/v1/evaluate/flags/{FLAG}",
        _OFREP,
        {"context": {"n": 10**30}},
        False,
    ),
]


async def _send(
    client: httpx.AsyncClient, platform: Platform, path: str, headers: dict[str, str], body: Any
) -> httpx.Response:
    all_headers = {**platform.auth("reader"), "Content-Type": "application/json", **headers}
    if isinstance(body, bytes):
        return await client.post(path, headers=all_headers, content=body)
    return await client.post(path, headers=all_headers, json=body)


def _comparable(response: httpx.Response) -> tuple[int, Any, str | None, list[str]]:
    body: Any = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("staleness_seconds", None)  # seconds since the reader's last sync: differs by a hair
    present = sorted(
        h for h in ("content-type", "x-request-id", "ratelimit", "ratelimit-policy") if h in response.headers
    )
    return response.status_code, body, response.headers.get("etag"), present


@pytest.mark.parametrize(("name", "path", "headers", "body", "ordinary"), CASES, ids=[c[0] for c in CASES])
async def test_same_answer_with_or_without_the_fast_lane(
    pair: Pair, name: str, path: str, headers: dict[str, str], body: Any, ordinary: bool
) -> None:
    platform = pair.platform
    await _send(
        platform.client, platform, path, {}, _evaluate([FLAG])
    )  # warm: the key cached, the reader open
    before = pair.lane.answered

    fast = await _send(platform.client, platform, path, headers, body)
    slow = await _send(pair.routes_only, platform, path, headers, body)

    assert _comparable(fast) == _comparable(slow), (name, fast.text, slow.text)
    assert pair.lane.answered - before == (1 if ordinary else 0), name


async def test_bulk_etag__304_from_the_lane_as_from_the_route(pair: Pair) -> None:
    platform = pair.platform
    path = "/ofrep/v1/evaluate/flags"
    first = await _send(platform.client, platform, path, _OFREP, {"context": _CONTEXT})
    etag = first.headers["etag"]
    before = pair.lane.answered

    fast = await _send(
        platform.client, platform, path, {**_OFREP, "If-None-Match": etag}, {"context": _CONTEXT}
    )
    slow = await _send(
        pair.routes_only, platform, path, {**_OFREP, "If-None-Match": etag}, {"context": _CONTEXT}
    )

    assert (fast.status_code, fast.headers["etag"], fast.content) == (304, etag, b"")
    assert (slow.status_code, slow.headers["etag"]) == (304, etag)
    assert pair.lane.answered - before == 1


async def test_a_request_handed_on_is_charged_once__the_refusal_comes_from_the_same_bucket(
    pair: Pair,
) -> None:
    """ops may evaluate 4 times a minute: a request the lane hands on (422) costs one token, not two."""
    platform = pair.platform
    one = "/api/v1/evaluate"

    async def ask(body: Any) -> httpx.Response:
        headers = {**platform.auth("ops"), "Content-Type": "application/json"}
        return await platform.client.post(one, headers=headers, json=body)

    responses = [await ask(_evaluate([FLAG]))]  # the key's first request: the routes answer, cache it
    responses.append(await ask(_evaluate([FLAG]) | {"flags": "x"}))  # handed on: 422
    responses += [await ask(_evaluate([FLAG])) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 422, 200, 200, 429], [r.text for r in responses]
    assert responses[2].headers["RateLimit"] == '"evaluation";r=1;t=0'
    assert responses[3].headers["RateLimit"].startswith('"evaluation";r=0;t=')  # t: until a token is back
    refused = responses[-1]
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("path", [f"/ofrep/v1/evaluate/flags/{FLAG}", "/ofrep/v1/evaluate/flags"])
async def test_ofrep_unknown_environment__refused_and_no_reader_opened(pair: Pair, path: str) -> None:
    """A name in a header must not make the API open (and keep) a Redis reader for it."""
    platform = pair.platform
    name = "made-up-" + path.rsplit("/", 1)[-1]

    answer = await _send(platform.client, platform, path, {"X-Flagstream-Environment": name}, {"context": {}})

    single = path.endswith(FLAG)
    assert answer.status_code == (404 if single else 400), answer.text
    assert answer.json()["errorCode"] == ("FLAG_NOT_FOUND" if single else "INVALID_CONTEXT")
    assert name in answer.json()["errorDetails"]
    assert platform.container.readers.open(name) is None
