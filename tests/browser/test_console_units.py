"""Fast checks of the console without a browser: sessions, CSRF, redirects, preview, asset budget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.requests import Request

from api.auth import Principal
from api.console.csrf import check_csrf
from api.console.editing import attributes_of, parse_config, preview_contexts
from api.console.listing import list_all_flags
from api.console.routes.signin import _safe_next
from api.console.session import Session, SessionStore
from api.errors import ApiError
from core.envelope import SEGMENT_STREAM_PREFIX
from core.evaluation import compile_environment
from core.model import Flag
from core.state import FlagState
from projections.connection import make_redis
from projections.keys import Keyspace

STATIC = Path(__file__).parents[2] / "api" / "console" / "static"
PRINCIPAL = Principal("alice", "writer", "k1")


def test_static_assets__js_and_css_together_under_200_kb() -> None:
    files = [p for p in STATIC.rglob("*") if p.suffix in (".js", ".css")]
    assert {p.name for p in files} >= {"console.js", "console.css", "htmx.min.js"}
    assert sum(p.stat().st_size for p in files) < 200 * 1024
    assert (STATIC / "vendor" / "htmx.LICENSE").read_text().strip()


@pytest.fixture
async def sessions(redis_url: str) -> AsyncIterator[SessionStore]:
    client = make_redis(redis_url)
    try:
        yield SessionStore(client, f"test-{uuid.uuid4().hex[:8]}", ttl_seconds=100)
    finally:
        await client.aclose()


async def test_session__stored_in_redis_with_expiry_renewed_by_use(
    sessions: SessionStore, redis_url: str
) -> None:
    session = await sessions.create(PRINCIPAL)
    assert session.id != session.csrf_token and len(session.id) >= 40
    client = make_redis(redis_url)
    try:
        keys = [k async for k in client.scan_iter(f"*:console:session:{session.id}")]
        assert len(keys) == 1
        key = keys[0]
        assert 90 < await client.ttl(key) <= 100
        await client.expire(key, 5)
        again = await sessions.get(session.id)
        assert again is not None and again.principal == PRINCIPAL and again.csrf_token == session.csrf_token
        assert await client.ttl(key) > 90
    finally:
        await client.aclose()
    assert await sessions.get("unknown") is None and await sessions.get(None) is None


async def test_session__deleted_on_sign_out(sessions: SessionStore) -> None:
    session = await sessions.create(PRINCIPAL)
    await sessions.delete(session.id)
    assert await sessions.get(session.id) is None


def _request(headers: dict[str, str], body: bytes = b"") -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/ui/x",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive)


@pytest.mark.parametrize(
    ("headers", "body", "accepted"),
    [
        ({"X-CSRF-Token": "good"}, b"", True),
        ({"content-type": "application/x-www-form-urlencoded"}, b"csrf_token=good", True),
        ({"X-CSRF-Token": "bad"}, b"", False),
        ({"content-type": "application/x-www-form-urlencoded"}, b"csrf_token=", False),
        ({"content-type": "application/json"}, b'{"csrf_token": "good"}', False),
        ({}, b"", False),
    ],
)
async def test_csrf__only_the_sessions_token_passes(
    headers: dict[str, str], body: bytes, accepted: bool
) -> None:
    session = Session("id", PRINCIPAL, "good")
    if accepted:
        await check_csrf(_request(headers, body), session)
        return
    with pytest.raises(ApiError) as caught:
        await check_csrf(_request(headers, body), session)
    assert (caught.value.status, caught.value.error_code) == (403, "csrf_failed")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/ui/flags/x", "/ui/flags/x"),
        ("https://evil.example/ui/", "/ui/flags"),
        ("//evil.example", "/ui/flags"),
        ("/ui/\\evil", "/ui/flags"),
        (None, "/ui/flags"),
        ("/api/v1/flags", "/ui/flags"),
    ],
)
def test_sign_in_redirect__only_to_console_paths(value: str | None, expected: str) -> None:
    assert _safe_next(value) == expected


def test_preview__unsaved_config_evaluated_with_deciding_rule_and_issues() -> None:
    flag = Flag(key="checkout")
    raw = {
        "enabled": True,
        "rules": [
            {
                "id": "ca",
                "when": {"attribute": "country", "op": "eq", "values": ["CA"]},
                "serve": {"variation": "on"},
            }
        ],
        "default": {"variation": "off"},
    }
    config, issues = parse_config(raw)
    assert config is not None and issues == []
    snapshot = compile_environment([(flag, 1)], "production", {})
    answer = preview_contexts(
        snapshot,
        flag,
        1,
        "production",
        config,
        [{"targetingKey": "a", "country": "CA"}, {"targetingKey": "b"}],
        [],
    )
    assert [(r["key"], r["variation"], r["rule_id"]) for r in answer["results"]] == [
        ("a", "on", "ca"),
        ("b", "off", None),
    ]
    assert answer["counts"] == {"on": 1, "off": 1}
    bad, _ = parse_config({**raw, "default": {"variation": "maybe"}})
    assert bad is not None
    assert (
        preview_contexts(snapshot, flag, 1, "production", bad, [], [])["issues"][0]["path"]
        == "default.variation"
    )


def test_parse_config__field_paths_for_structural_errors() -> None:
    config, issues = parse_config(
        {
            "rules": [
                {
                    "id": "r",
                    "when": {"attribute": "n", "op": "gt", "values": ["x"]},
                    "serve": {"variation": "on"},
                }
            ]
        }
    )
    assert config is None
    assert issues[0]["path"].startswith("rules[0].when")


def test_attributes__from_rules_of_every_environment() -> None:
    flag = Flag.model_validate(
        {
            "key": "f",
            "environments": {
                "a": {
                    "rules": [
                        {
                            "id": "r",
                            "when": {"all": [{"attribute": "plan", "op": "eq", "values": ["pro"]}]},
                            "serve": {"variation": "on"},
                        }
                    ]
                }
            },
        }
    )
    assert attributes_of(flag, {}) == ["plan", "targetingKey"]


async def test_flag_list__every_flag_across_batches_sorted_segments_left_out(redis_url: str) -> None:
    client = make_redis(redis_url)
    keys = Keyspace(f"test-{uuid.uuid4().hex[:8]}")
    flag = Flag.model_validate(
        {
            "key": "x",
            "name": "Checkout",
            "tags": ["web"],
            "environments": {"production": {"enabled": True, "default": {"variation": "on"}}},
        }
    )
    try:
        async with client.pipeline() as pipe:
            for i in range(2500):
                key = f"flag-{i:04d}"
                state = FlagState(key=key, version=2, flag=flag.model_copy(update={"key": key}))
                pipe.set(keys.state(key), state.model_dump_json())
            pipe.set(keys.state(f"{SEGMENT_STREAM_PREFIX}beta"), '{"key": "segment:beta", "version": 1}')
            await pipe.execute()
        rows = await list_all_flags(client, keys)
    finally:
        await client.aclose()
    assert [r.key for r in rows] == [f"flag-{i:04d}" for i in range(2500)]
    assert rows[7].enabled == {"production": True} and rows[7].tags == ("web",) and rows[7].version == 2
    assert sum(r.matches("FLAG-00", "web") for r in rows) == 100
    assert not rows[0].matches("checkout", "mobile")
