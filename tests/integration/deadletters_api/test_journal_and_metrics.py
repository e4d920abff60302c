"""On Postgres: two processes' journals share ``ops:dead-letters`` without gaps; the metrics refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.envelope import verify_chain
from core.events import DeadLetterPurgedPayload, DeadLetterRef
from events.deadletters.operations import (
    DEAD_LETTERS_STREAM,
    OperationsJournal,
    PostgresStreamHead,
    refresh_dead_letter_metrics,
)
from monitoring.metrics import REGISTRY
from tests.integration.deadletters_api.conftest import DlqApi, a_letter

pytestmark = pytest.mark.integration

REF = DeadLetterRef(letter_id=1, stage="relay", flag_key="f", version=1, error_class="X", error_message="m")


async def test_journals_of_two_processes__concurrent__gapless_chain_after_retries(api: DlqApi) -> None:
    pool = api.app.state.container.pool
    journals = [
        OperationsJournal(
            api.store, PostgresStreamHead(pool), clock=lambda: datetime.now(UTC), max_attempts=30
        )
        for _ in range(2)
    ]
    await asyncio.gather(
        *(
            journals[n % 2].record(DeadLetterPurgedPayload(letter=REF), actor=f"process-{n % 2}", reason="r")
            for n in range(16)
        )
    )
    events = await api.store.read_stream(DEAD_LETTERS_STREAM)
    assert [e.version for e in events] == list(range(1, 17)) and verify_chain(events) is None
    assert sorted(e.actor for e in events) == ["process-0"] * 8 + ["process-1"] * 8


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_refresh_metrics__parked_and_blocked__gauges_by_stage_and_class(api: DlqApi) -> None:
    old = datetime.now(UTC) - timedelta(minutes=10)
    _, _, purged = await api.park(
        a_letter("projector", "a", failed_at=old),
        a_letter("projector", "b"),
        a_letter("relay", "c"),
    )
    await api.dlq.mark_purged(purged.id, "someone", "obsolete")
    stats = await refresh_dead_letter_metrics(api.dlq)
    assert stats.counts == {"projector": {"MalformedEvent": 2}}
    assert _sample("flagstream_dead_letters", stage="projector", error_class="MalformedEvent") == 2
    assert _sample("flagstream_dead_letters", stage="relay", error_class="MalformedEvent") in (None, 0)
    age = _sample("flagstream_dead_letter_oldest_age_seconds", stage="projector")
    assert age is not None and 590 <= age <= 3600
    assert _sample("flagstream_dead_letter_oldest_age_seconds", stage="relay") == 0
    assert _sample("flagstream_blocked_flags", stage="projector") == 2
    assert _sample("flagstream_blocked_flags", stage="relay") == 0
