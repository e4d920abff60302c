"""Operators read the dead-letter queue over HTTP: list (filters, pages), one letter, blocked flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import UnknownEventType
from tests.integration.deadletters_api.conftest import DlqApi, a_letter

pytestmark = pytest.mark.integration


async def test_list__no_filter__returns_parked_letters_in_id_order(api: DlqApi) -> None:
    parked = await api.park(a_letter("projector", "a"), a_letter("relay", "b"), a_letter("rollback", "c"))
    response = await api.request("GET", "/api/v1/dead-letters")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == [letter.id for letter in parked]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert (first["stage"], first["flag"], first["version"], first["status"]) == (
        "projector",
        "a",
        1,
        "parked",
    )
    assert (first["error_class"], first["error_message"], first["attempts"]) == (
        "MalformedEvent",
        "cannot apply",
        1,
    )
    assert first["event"] is None  # bodies only in the detail view


async def test_list__filters__narrow_by_stage_error_class_flag_and_age(api: DlqApi) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    projector_a, relay_b, projector_c, _ = await api.park(
        a_letter("projector", "a"),
        a_letter("relay", "b", failed_at=old),
        a_letter("projector", "c", error=UnknownEventType("FlagTeleported")),
        a_letter("rollback", "d"),
    )

    async def ids(query: str) -> list[int]:
        response = await api.request("GET", f"/api/v1/dead-letters?{query}")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids("stage=projector") == [projector_a.id, projector_c.id]
    assert await ids("error_class=UnknownEventType") == [projector_c.id]
    assert await ids("flag=a") == [projector_a.id]
    assert await ids("min_age_seconds=3600") == [relay_b.id]
    older_than = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert await ids(f"older_than={older_than}") == [relay_b.id]
    assert await ids("stage=projector&flag=c") == [projector_c.id]


async def test_list__status_any__includes_resolved_letters(api: DlqApi) -> None:
    purged, parked = await api.park(a_letter(flag_key="a"), a_letter(flag_key="b"))
    await api.dlq.mark_purged(purged.id, "someone", "obsolete")
    default = (await api.request("GET", "/api/v1/dead-letters")).json()["items"]
    purged_only = (await api.request("GET", "/api/v1/dead-letters?status=purged")).json()["items"]
    every = (await api.request("GET", "/api/v1/dead-letters?status=any")).json()["items"]
    assert [i["id"] for i in default] == [parked.id]
    assert [(i["id"], i["status"], i["resolved_by"]) for i in purged_only] == [
        (purged.id, "purged", "someone")
    ]
    assert [i["id"] for i in every] == [purged.id, parked.id]


async def test_list__limit_and_cursor__pages_through_every_letter_once(api: DlqApi) -> None:
    parked = await api.park(*(a_letter(flag_key=f"flag-{n}") for n in range(5)))
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await api.request("GET", "/api/v1/dead-letters", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [letter.id for letter in parked] and pages == 3


@pytest.mark.parametrize(
    ("query", "code", "path"),
    [
        ("cursor=not-a-cursor", "invalid_cursor", "cursor"),
        ("stage=kafka", "validation_error", "stage"),
        ("limit=0", "validation_error", "limit"),
        ("limit=501", "validation_error", "limit"),
        ("min_age_seconds=-1", "validation_error", "min_age_seconds"),
        ("older_than=yesterday", "validation_error", "older_than"),
        ("older_than=2026-11-01T00:00:00", "validation_error", "older_than"),
        ("min_age_seconds=5&older_than=2026-11-01T00:00:00Z", "validation_error", "older_than"),
        ("status=lost", "validation_error", "status"),
    ],
)
async def test_list__bad_query__422_with_code_and_field_path(
    api: DlqApi, query: str, code: str, path: str
) -> None:
    response = await api.request("GET", f"/api/v1/dead-letters?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and path in [d["path"] for d in error["details"]]


async def test_get__existing_letter__returns_it_with_its_event(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter("relay", "checkout", 3))
    response = await api.request("GET", f"/api/v1/dead-letters/{letter.id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["stage"], body["flag"], body["version"]) == (letter.id, "relay", "checkout", 3)
    assert body["event"] == letter.event_body and body["event_id"] == str(letter.event_id)


async def test_get__unknown_id__404_dead_letter_not_found(api: DlqApi) -> None:
    response = await api.request("GET", "/api/v1/dead-letters/424242")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "dead_letter_not_found"


async def test_blocked_flags__parked_letters__lists_flags_per_stage(api: DlqApi) -> None:
    redriven, _, _, purged = await api.park(
        a_letter("projector", "a", 1),
        a_letter("projector", "b", 1),
        a_letter("relay", "c", 1),
        a_letter("relay", "d", 1),
    )
    await api.dlq.mark_redriven(redriven.id, "someone")  # not reprocessed yet: still blocks "a"
    await api.dlq.mark_purged(purged.id, "someone", "obsolete")
    response = await api.request("GET", "/api/v1/dead-letters/blocked-flags")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "stages": {"relay": ["c"], "projector": ["a", "b"], "rollback": []},
        "total": 3,
    }


ENDPOINTS = [
    ("GET", "/api/v1/dead-letters", None),
    ("GET", "/api/v1/dead-letters/blocked-flags", None),
    ("GET", "/api/v1/dead-letters/1", None),
    ("POST", "/api/v1/dead-letters/1/redrive", {}),
    ("POST", "/api/v1/dead-letters/redrive", {"stage": "relay"}),
    ("DELETE", "/api/v1/dead-letters/1", {"reason": "obsolete"}),
]


@pytest.mark.parametrize("role", ["reader", "writer", "alerts"])
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_endpoints__role_without_operate__403(
    api: DlqApi, role: str, method: str, path: str, body: dict[str, str] | None
) -> None:
    await api.park(a_letter())
    response = await api.request(method, path, role=role, json=body)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert (await api.dlq.get(1)).status == "parked"


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_endpoints__no_credentials__401(
    api: DlqApi, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = await api.client.request(method, path, json=body)
    assert response.status_code == 401


@pytest.mark.parametrize("role", ["ops", "admin"])
async def test_list__ops_or_admin__allowed(api: DlqApi, role: str) -> None:
    response = await api.request("GET", "/api/v1/dead-letters", role=role)
    assert response.status_code == 200, response.text


async def test_list__stage_rollback__the_rollback_workers_letters(api: DlqApi) -> None:
    rollback, _ = await api.park(a_letter("rollback", "alert:fp-1", 1), a_letter("relay", "b", 1))
    response = await api.request("GET", "/api/v1/dead-letters", params={"stage": "rollback"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["id"], i["stage"], i["flag"]) for i in items] == [(rollback.id, "rollback", "alert:fp-1")]
