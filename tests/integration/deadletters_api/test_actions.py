"""Operators purge and redrive dead letters over HTTP; every action is an event of ``ops:dead-letters``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from core.envelope import Event, verify_chain
from core.events import DeadLetterPurgedPayload, DeadLettersRedrivenPayload, read_payload
from events.deadletters import DeadLetter, NewDeadLetter
from events.deadletters.operations import DEAD_LETTERS_STREAM
from tests.integration.deadletters_api.conftest import DlqApi, a_letter, an_event

pytestmark = pytest.mark.integration


class RecordingRedriver:
    """A stage's redriver that records what it was given (and can be told to fail)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[tuple[str | None, int | None, int]]] = []
        self._fail = fail

    async def __call__(self, letters: Sequence[DeadLetter]) -> int:
        self.calls.append([(letter.flag_key, letter.version, letter.id) for letter in letters])
        assert all(letter.status == "redriven" or letter.is_waiting for letter in letters)
        if self._fail:
            raise ConnectionError("broker unreachable")
        return len(letters)


async def _ops_events(api: DlqApi) -> list[Event]:
    return await api.store.read_stream(DEAD_LETTERS_STREAM)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (None, "$"),
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"why": "x"}, "reason"),
    ],
)
async def test_purge__no_reason__422_and_letter_stays_parked(api: DlqApi, body: Any, path: str) -> None:
    (letter,) = await api.park(a_letter())
    response = await api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and path in [d["path"] for d in error["details"]]
    assert (await api.dlq.get(letter.id)).status == "parked"
    assert await _ops_events(api) == []


async def test_purge__with_reason__resolves_letter_and_records_event_with_principal_as_actor(
    api: DlqApi,
) -> None:
    (letter,) = await api.park(a_letter("projector", "checkout", 4))
    response = await api.request(
        "DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "poison: superseded by v5"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["letter"]["status"] == "purged" and body["letter"]["resolved_by"] == "test-ops"
    (event,) = await _ops_events(api)
    assert (str(event.event_id), event.version, body["event_version"]) == (body["event_id"], 1, 1)
    assert (event.type, event.actor, event.reason) == (
        "DeadLetterPurged",
        "test-ops",
        "poison: superseded by v5",
    )
    assert event.correlation_id == response.headers.get("x-request-id", event.correlation_id)
    payload = read_payload(event)
    assert isinstance(payload, DeadLetterPurgedPayload)
    ref = payload.letter
    assert (ref.letter_id, ref.stage, ref.flag_key, ref.version) == (letter.id, "projector", "checkout", 4)
    assert (ref.event_id, ref.error_class, ref.error_message) == (
        letter.event_id,
        "MalformedEvent",
        "cannot apply",
    )
    stored = await api.dlq.get(letter.id)
    assert (stored.status, stored.resolved_by, stored.resolve_reason) == (
        "purged",
        "test-ops",
        "poison: superseded by v5",
    )


async def test_purge__already_purged__409_and_no_second_event(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter())
    first = await api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "x"})
    second = await api.request(
        "DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "x"}, role="admin"
    )
    assert first.status_code == 200 and second.status_code == 409
    assert second.json()["error"]["code"] == "dead_letter_resolved"
    assert len(await _ops_events(api)) == 1


async def test_purge__unknown_id__404(api: DlqApi) -> None:
    response = await api.request("DELETE", "/api/v1/dead-letters/99", json={"reason": "x"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "dead_letter_not_found"


async def test_actions__concurrent__ops_stream_is_gapless_and_chained(api: DlqApi) -> None:
    letters = await api.park(*(a_letter(flag_key=f"flag-{n}") for n in range(12)))
    responses = await asyncio.gather(
        *(
            api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": f"r{letter.id}"})
            if n % 2
            else api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive", role="admin")
            for n, letter in enumerate(letters)
        )
    )
    assert [r.status_code for r in responses] == [200] * 12
    events = await _ops_events(api)
    assert [e.version for e in events] == list(range(1, 13))
    assert verify_chain(events) is None
    assert sorted(e.actor for e in events) == ["test-admin"] * 6 + ["test-ops"] * 6


async def test_redrive_one__calls_the_stage_redriver_and_records_event(api: DlqApi) -> None:
    projector, relay = RecordingRedriver(), RecordingRedriver()
    api.register_redriver("projector", projector)
    api.register_redriver("relay", relay)
    (letter,) = await api.park(a_letter("projector", "checkout", 2))
    response = await api.request(
        "POST", f"/api/v1/dead-letters/{letter.id}/redrive", json={"reason": "fixed projector build"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["redriven"], body["ids"], body["by_stage"]) == (1, [letter.id], {"projector": 1})
    assert (body["reprocessed"], body["failures"], body["more"]) == ({"projector": 1}, {}, False)
    assert projector.calls == [[("checkout", 2, letter.id)]] and relay.calls == []
    (event,) = await _ops_events(api)
    assert (event.type, event.actor, event.reason, str(event.event_id)) == (
        "DeadLettersRedriven",
        "test-ops",
        "fixed projector build",
        body["event_id"],
    )
    payload = read_payload(event)
    assert isinstance(payload, DeadLettersRedrivenPayload)
    assert [ref.letter_id for ref in payload.letters] == [letter.id] and payload.filter is None
    stored = await api.dlq.get(letter.id)
    assert (stored.status, stored.resolved_by) == ("redriven", "test-ops")


async def test_redrive_one__no_redriver_registered__marks_redriven_for_the_stage_worker(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter("rollback", "checkout", 1))
    response = await api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive")
    assert response.status_code == 200, response.text
    assert response.json()["reprocessed"] == {}
    assert [x.id for x in await api.dlq.releasable("rollback")] == [letter.id]


async def test_redrive_one__already_redriven__409(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter())
    assert (await api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive")).status_code == 200
    again = await api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive")
    assert again.status_code == 409 and again.json()["error"]["code"] == "dead_letter_resolved"


async def test_redrive_one__unknown_id__404(api: DlqApi) -> None:
    response = await api.request("POST", "/api/v1/dead-letters/77/redrive")
    assert response.status_code == 404 and response.json()["error"]["code"] == "dead_letter_not_found"


async def test_redrive_one__redriver_fails__200_with_failure_and_letter_left_to_the_stage(
    api: DlqApi,
) -> None:
    api.register_redriver("relay", RecordingRedriver(fail=True))
    (letter,) = await api.park(a_letter("relay", "checkout", 1))
    response = await api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive")
    assert response.status_code == 200, response.text
    assert response.json()["failures"] == {"relay": "ConnectionError: broker unreachable"}
    assert [x.id for x in await api.dlq.releasable("relay")] == [letter.id]


async def test_redrive_by_filter__stage__redrives_only_that_stage_in_version_order(api: DlqApi) -> None:
    projector, relay = RecordingRedriver(), RecordingRedriver()
    api.register_redriver("projector", projector)
    api.register_redriver("relay", relay)
    b2, a1, untouched, b1 = await api.park(
        a_letter("projector", "b", 2),
        a_letter("projector", "a", 1),
        a_letter("relay", "a", 1),
        a_letter("projector", "b", 1),
    )
    response = await api.request(
        "POST", "/api/v1/dead-letters/redrive", json={"stage": "projector", "reason": "fixed build"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["redriven"], sorted(body["ids"]), body["by_stage"]) == (
        3,
        sorted([b2.id, a1.id, b1.id]),
        {"projector": 3},
    )
    assert projector.calls == [[("a", 1, a1.id), ("b", 1, b1.id), ("b", 2, b2.id)]] and relay.calls == []
    assert (await api.dlq.get(untouched.id)).status == "parked"
    (event,) = await _ops_events(api)
    payload = read_payload(event)
    assert isinstance(payload, DeadLettersRedrivenPayload)
    assert payload.filter == {"stage": "projector", "limit": 100}
    assert sorted(ref.letter_id for ref in payload.letters) == sorted(body["ids"])


async def test_redrive_by_filter__limit__redrives_oldest_and_says_more_remain(api: DlqApi) -> None:
    letters = await api.park(*(a_letter("relay", f"flag-{n}") for n in range(3)))
    response = await api.request("POST", "/api/v1/dead-letters/redrive", json={"flag": "flag-0"})
    assert response.json()["ids"] == [letters[0].id] and response.json()["more"] is False
    response = await api.request("POST", "/api/v1/dead-letters/redrive", json={"stage": "relay", "limit": 1})
    assert response.json()["ids"] == [letters[1].id] and response.json()["more"] is True


async def test_redrive_by_filter__nothing_matches__zero_and_no_event(api: DlqApi) -> None:
    await api.park(a_letter("relay"))
    response = await api.request("POST", "/api/v1/dead-letters/redrive", json={"stage": "rollback"})
    assert response.status_code == 200, response.text
    assert (response.json()["redriven"], response.json()["event_id"]) == (0, None)
    assert await _ops_events(api) == []


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({}, "redrive_filter_required", "$"),
        ({"reason": "all of it"}, "redrive_filter_required", "$"),
        ({"stage": "kafka"}, "validation_error", "stage"),
        ({"stage": "relay", "limit": 0}, "validation_error", "limit"),
        ({"stage": "relay", "colour": "red"}, "validation_error", "colour"),
        ({"older_than": "soon"}, "validation_error", "older_than"),
    ],
)
async def test_redrive_by_filter__bad_body__422(
    api: DlqApi, body: dict[str, Any], code: str, path: str
) -> None:
    (letter,) = await api.park(a_letter("relay"))
    response = await api.request("POST", "/api/v1/dead-letters/redrive", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and path in [d["path"] for d in error["details"]]
    assert (await api.dlq.get(letter.id)).status == "parked"


async def test_redrive_one__blocker_with_waiting_letters__redriver_gets_them_all_in_version_order(
    api: DlqApi,
) -> None:
    projector = RecordingRedriver()
    api.register_redriver("projector", projector)
    blocker, waiting2, waiting3, _ = await api.park(
        a_letter("projector", "a", 1),
        NewDeadLetter.waiting("projector", an_event("a", 2)),
        NewDeadLetter.waiting("projector", an_event("a", 3)),
        a_letter("projector", "b", 1),
    )
    response = await api.request("POST", f"/api/v1/dead-letters/{blocker.id}/redrive")
    assert response.status_code == 200, response.text
    assert projector.calls == [[("a", 1, blocker.id), ("a", 2, waiting2.id), ("a", 3, waiting3.id)]]
    assert response.json()["reprocessed"] == {"projector": 3}


async def test_redrive_one__waiting_letter_behind_parked_blocker__redriver_not_called(api: DlqApi) -> None:
    projector = RecordingRedriver()
    api.register_redriver("projector", projector)
    _, waiting = await api.park(
        a_letter("projector", "a", 1), NewDeadLetter.waiting("projector", an_event("a", 2))
    )
    response = await api.request("POST", f"/api/v1/dead-letters/{waiting.id}/redrive")
    assert response.status_code == 200, response.text
    assert projector.calls == [] and response.json()["reprocessed"] == {}
    assert response.json()["by_stage"] == {"projector": 1}
