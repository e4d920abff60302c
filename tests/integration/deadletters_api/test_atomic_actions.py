"""Operator actions are atomic with their audit event: a purge or redrive whose ``ops:dead-letters``
event cannot be appended leaves the letter as it was (one Postgres transaction for both).

The failure is injected in Postgres itself (a trigger refusing the append of the ops event), so
the path under test is the real one, API to database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import asyncpg
import httpx
import pytest

from core.envelope import Event
from events.deadletters.operations import DEAD_LETTERS_STREAM
from tests.integration.deadletters_api.conftest import DlqApi, a_letter

pytestmark = pytest.mark.integration

_REFUSE = """
CREATE FUNCTION test_refuse_ops_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected: the ops event cannot be appended' USING ERRCODE = 'check_violation'; END $$;
CREATE TRIGGER test_refuse_ops_append BEFORE INSERT ON events
   FOR EACH ROW WHEN (NEW.flag_key = 'ops:dead-letters') EXECUTE FUNCTION test_refuse_ops_append();"""
_ALLOW = "DROP TRIGGER test_refuse_ops_append ON events; DROP FUNCTION test_refuse_ops_append();"


@pytest.fixture
async def refusing_ops_events(api: DlqApi) -> AsyncIterator[None]:
    pool = api.app.state.container.pool
    await pool.execute(_REFUSE)
    try:
        yield
    finally:
        await pool.execute(_ALLOW)


async def _status_of(request: Awaitable[httpx.Response]) -> int:
    """The HTTP status, or 500 when the app let the injected database error through (the test
    client re-raises what no handler answered, as the server would answer 500)."""
    try:
        return (await request).status_code
    except asyncpg.PostgresError:
        return 500


async def _ops_events(api: DlqApi) -> list[Event]:
    return await api.store.read_stream(DEAD_LETTERS_STREAM)


@pytest.mark.usefixtures("refusing_ops_events")
async def test_purge__audit_event_append_fails__letter_stays_parked(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter("projector", "checkout", 4))

    purge = api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "x"})
    status = await _status_of(purge)

    assert status >= 500
    assert (await api.dlq.get(letter.id)).status == "parked"
    assert await _ops_events(api) == []


@pytest.mark.usefixtures("refusing_ops_events")
async def test_redrive_one__audit_event_append_fails__letter_stays_parked(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter("relay", "checkout", 2))

    status = await _status_of(api.request("POST", f"/api/v1/dead-letters/{letter.id}/redrive", json={}))

    assert status >= 500
    assert (await api.dlq.get(letter.id)).status == "parked"
    assert await _ops_events(api) == []


@pytest.mark.usefixtures("refusing_ops_events")
async def test_redrive_matching__audit_event_append_fails__every_letter_stays_parked(api: DlqApi) -> None:
    letters = await api.park(a_letter("projector", "a", 1), a_letter("projector", "b", 1))

    redrive = api.request("POST", "/api/v1/dead-letters/redrive", json={"stage": "projector"})
    status = await _status_of(redrive)

    assert status >= 500
    assert [(await api.dlq.get(lt.id)).status for lt in letters] == ["parked", "parked"]
    assert await _ops_events(api) == []


async def test_purge_after_a_refused_one__resolved_and_recorded_once(api: DlqApi) -> None:
    (letter,) = await api.park(a_letter("projector", "checkout", 4))
    pool = api.app.state.container.pool
    await pool.execute(_REFUSE)
    try:
        refused = await _status_of(
            api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "poison"})
        )
    finally:
        await pool.execute(_ALLOW)

    response = await api.request("DELETE", f"/api/v1/dead-letters/{letter.id}", json={"reason": "poison"})

    assert refused >= 500 and response.status_code == 200, response.text
    assert (await api.dlq.get(letter.id)).status == "purged"
    (event,) = await _ops_events(api)
    assert event.type == "DeadLetterPurged" and str(event.event_id) == response.json()["event_id"]
