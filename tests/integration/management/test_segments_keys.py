"""Management API on the real stack (Postgres, Redis, Kafka): segments and API keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.apikeys import API_KEYS_STREAM
from tests.integration.management.support import create_flag
from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    """One platform per module; no workers (nothing here reads the projection)."""
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap, run_workers=False) as p,
    ):
        yield p


def _key() -> str:
    return "s-" + uuid.uuid4().hex[:12]


def _segment(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": "Beta", "when": {"attribute": "plan", "op": "eq", "values": ["pro"]}, **extra}


# --- segments -----------------------------------------------------------------------------------


async def test_segments__create_read_update_archive(platform: Platform) -> None:
    key = _key()
    created = await platform.request(
        "POST", "/api/v1/segments", role="writer", json={**_segment(key), "reason": "beta"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.headers["location"] == f"/api/v1/segments/{key}"

    one = await platform.request("GET", f"/api/v1/segments/{key}", role="reader")
    assert one.status_code == 200 and one.json()["segment"]["when"]["values"] == ["pro"]

    updated = await platform.request(
        "PUT",
        f"/api/v1/segments/{key}",
        role="writer",
        json={**_segment(key, included=["u-1"]), "expected_version": 1},
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = await platform.request(
        "PUT", f"/api/v1/segments/{key}", role="writer", json={**_segment(key), "expected_version": 1}
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "version_conflict"

    archived = await platform.request(
        "POST", f"/api/v1/segments/{key}/archive", role="writer", json={"reason": "done"}
    )
    assert archived.status_code == 200 and archived.json()["version"] == 3
    listed = await platform.request("GET", "/api/v1/segments", role="reader")
    assert key not in [s["key"] for s in listed.json()["items"]]
    with_archived = await platform.request("GET", "/api/v1/segments?include_archived=true", role="reader")
    assert key in [s["key"] for s in with_archived.json()["items"]]
    events = await platform.store.read_stream(f"segment:{key}")
    assert [e.type for e in events] == ["SegmentCreated", "SegmentUpdated", "SegmentArchived"]
    assert events[0].actor == "test-writer" and events[0].reason == "beta"


async def test_segments__bad_body__422_with_field_paths(platform: Platform) -> None:
    response = await platform.request(
        "POST",
        "/api/v1/segments",
        json={"key": "Bad Key", "when": {"attribute": "x", "op": "lt", "values": ["a"]}},
    )
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    assert {d["path"] for d in body["details"]} >= {"key", "when"}


async def test_segments__unknown__404_and_reader_cannot_write(platform: Platform) -> None:
    missing = await platform.request("GET", "/api/v1/segments/nope-" + uuid.uuid4().hex[:6], role="reader")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "segment_not_found"
    refused = await platform.request("POST", "/api/v1/segments", role="reader", json=_segment(_key()))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_segments__in_use_by_a_flag__archive_refused(platform: Platform) -> None:
    key, flag = _key(), "f-" + uuid.uuid4().hex[:10]
    assert (await platform.request("POST", "/api/v1/segments", json=_segment(key))).status_code == 201
    config = {
        "rules": [
            {
                "id": "r",
                "when": {"attribute": "k", "op": "in_segment", "values": [key]},
                "serve": {"variation": "on"},
            }
        ]
    }
    await create_flag(platform, {"key": flag, "environments": {"prod": config}})

    refused = await platform.request("POST", f"/api/v1/segments/{key}/archive")

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "segment_in_use"


# --- API keys -----------------------------------------------------------------------------------


async def test_keys__create_list_revoke__secret_shown_once_and_audited(platform: Platform) -> None:
    created = await platform.request(
        "POST", "/api/v1/keys", json={"principal": "ci-bot", "role": "writer", "reason": "ci"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret, key_id = body["secret"], body["id"]
    assert secret.startswith("fs_") and body["active"] is True and body["role"] == "writer"

    use = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
    assert use.status_code == 200

    listing = await platform.request("GET", "/api/v1/keys")
    assert listing.status_code == 200
    assert key_id in [k["id"] for k in listing.json()["items"]]
    assert secret not in listing.text and "secret" not in listing.text

    revoked = await platform.request("DELETE", f"/api/v1/keys/{key_id}?reason=leaked")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    refused = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    again = await platform.request("DELETE", f"/api/v1/keys/{key_id}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"

    events = [e for e in await platform.store.read_stream(API_KEYS_STREAM) if e.payload["key_id"] == key_id]
    assert [e.type for e in events] == ["ApiKeyCreated", "ApiKeyRevoked"]
    assert {e.actor for e in events} == {"test-admin"} and events[1].reason == "leaked"
    assert all(secret not in e.to_json() for e in events)


async def test_keys__rotate_without_grace__new_secret_works_old_refused(platform: Platform) -> None:
    created = (
        await platform.request("POST", "/api/v1/keys", json={"principal": "svc", "role": "reader"})
    ).json()
    old = {"Authorization": f"Bearer {created['secret']}"}
    assert (await platform.client.get("/api/v1/flags", headers=old)).status_code == 200

    rotated = await platform.request(
        "POST", f"/api/v1/keys/{created['id']}/rotate", json={"reason": "leaked", "grace_seconds": 0}
    )

    assert rotated.status_code == 201
    new = rotated.json()
    assert new["replaces"] == created["id"] and new["principal"] == "svc" and new["role"] == "reader"
    assert (await platform.client.get("/api/v1/flags", headers=old)).status_code == 401
    assert (
        await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {new['secret']}"})
    ).status_code == 200
    events = [
        e for e in await platform.store.read_stream(API_KEYS_STREAM) if e.payload["key_id"] == created["id"]
    ]
    assert events[-1].type == "ApiKeyRotated" and events[-1].payload["new_key_id"] == new["id"]
    assert events[-1].payload["grace_seconds"] == 0
    assert datetime.fromisoformat(new["replaced_expires_at"]) <= datetime.now(UTC)


async def test_keys__rotate__old_secret_valid_for_the_default_grace_then_refused(platform: Platform) -> None:
    created = (
        await platform.request("POST", "/api/v1/keys", json={"principal": "svc-g", "role": "reader"})
    ).json()
    old = {"Authorization": f"Bearer {created['secret']}"}
    before = datetime.now(UTC)

    rotated = await platform.request("POST", f"/api/v1/keys/{created['id']}/rotate")

    assert rotated.status_code == 201
    new = rotated.json()
    expires = datetime.fromisoformat(new["replaced_expires_at"])
    assert (
        before + timedelta(hours=24) - timedelta(seconds=5)
        <= expires
        <= datetime.now(UTC) + timedelta(hours=24)
    )
    platform.container.auth.forget_key(created["id"])  # no cached answer: Postgres decides
    assert (await platform.client.get("/api/v1/flags", headers=old)).status_code == 200
    listed = {k["id"]: k for k in (await platform.request("GET", "/api/v1/keys")).json()["items"]}
    assert listed[created["id"]]["active"] is True and listed[created["id"]]["expires_at"] is not None
    events = [
        e for e in await platform.store.read_stream(API_KEYS_STREAM) if e.payload["key_id"] == created["id"]
    ]
    assert events[-1].type == "ApiKeyRotated" and events[-1].payload["grace_seconds"] == 24 * 3600
    assert datetime.fromisoformat(str(events[-1].payload["old_key_expires_at"])) == expires

    again = await platform.request("POST", f"/api/v1/keys/{created['id']}/rotate", json={"grace_seconds": 0})
    assert again.status_code == 404  # already rotated: one successor per key

    # the grace period ends (moved into the past rather than waited for)
    await platform.container.pool.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"]
    )
    platform.container.auth.forget_key(created["id"])
    assert (await platform.client.get("/api/v1/flags", headers=old)).status_code == 401
    listed = {k["id"]: k for k in (await platform.request("GET", "/api/v1/keys")).json()["items"]}
    assert listed[created["id"]]["active"] is False
    new_auth = {"Authorization": f"Bearer {new['secret']}"}
    assert (await platform.client.get("/api/v1/flags", headers=new_auth)).status_code == 200


async def test_keys__rotate__grace_out_of_bounds__422(platform: Platform) -> None:
    created = (
        await platform.request("POST", "/api/v1/keys", json={"principal": "svc-b", "role": "reader"})
    ).json()
    for grace in (-1, 31 * 24 * 3600):
        answer = await platform.request(
            "POST", f"/api/v1/keys/{created['id']}/rotate", json={"grace_seconds": grace}
        )
        assert answer.status_code == 422, grace


@pytest.mark.parametrize("role", ["writer", "reader", "ops", "alerts"])
async def test_keys__not_admin__403(platform: Platform, role: str) -> None:
    for method, path in (
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("DELETE", "/api/v1/keys/key_0123456789abcdef"),
    ):
        response = await platform.request(method, path, role=role, json={"principal": "x", "role": "reader"})
        assert response.status_code == 403, (method, path)


async def test_keys__bad_body__422_with_field_path(platform: Platform) -> None:
    response = await platform.request("POST", "/api/v1/keys", json={"principal": " ", "role": "root"})
    assert response.status_code == 422
    assert {d["path"] for d in response.json()["error"]["details"]} == {"principal", "role"}
    bad_id = await platform.request("DELETE", "/api/v1/keys/not-an-id")
    assert bad_id.status_code == 422


async def test_keys__revoked_in_one_process__refused_by_another_within_a_second(platform: Platform) -> None:
    """Process B has the key in its auth cache (TTL 5 s); the NOTIFY must evict it well before the TTL."""
    created = (
        await platform.request("POST", "/api/v1/keys", json={"principal": "svc-b", "role": "reader"})
    ).json()
    headers = {"Authorization": f"Bearer {created['secret']}"}
    other = create_app(platform.settings)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://b.test") as b,
    ):
        if True:
            assert (await b.get("/api/v1/flags", headers=headers)).status_code == 200  # now cached in B

            assert (await platform.request("DELETE", f"/api/v1/keys/{created['id']}")).status_code == 200
            revoked_at = time.monotonic()
            status = 200
            while status == 200 and time.monotonic() - revoked_at < 4.0:
                status = (await b.get("/api/v1/flags", headers=headers)).status_code
                if status == 200:
                    await asyncio.sleep(0.01)  # polling the condition, bounded by the 4 s deadline
            elapsed = time.monotonic() - revoked_at

    assert status == 401
    assert elapsed < 1.0, f"refused after {elapsed:.3f}s: the notice did not reach the other process"
