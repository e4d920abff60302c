"""The operations journal: operator actions become sealed, chained events of an ``ops:`` stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from core.envelope import GENESIS_HASH, Event, seal, verify_chain
from core.events import (
    DeadLetterPurgedPayload,
    DeadLetterRef,
    DeadLettersRedrivenPayload,
    read_payload,
    to_draft,
)
from events.deadletters.operations import (
    DEAD_LETTERS_STREAM,
    OperationsContended,
    OperationsJournal,
    stream_head_of,
)
from events.store.idempotency import IdempotencyWrite
from events.store.memory import InMemoryEventStore

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
REF = DeadLetterRef(
    letter_id=7, stage="projector", flag_key="checkout", version=3, error_class="X", error_message="m"
)


def _journal(store: InMemoryEventStore, max_attempts: int = 10) -> OperationsJournal:
    return OperationsJournal(store, stream_head_of(store), clock=lambda: NOW, max_attempts=max_attempts)


class RacingStore(InMemoryEventStore):
    """Before each of the first ``races`` appends, another process appends to the same stream."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        if self.races > 0:
            self.races -= 1
            stream = events[0].flag_key
            head = await self.read_stream(stream)
            rival = seal(
                to_draft(DeadLetterPurgedPayload(letter=REF)),
                event_id=uuid.uuid4(),
                flag_key=stream,
                version=len(head) + 1,
                prev_hash=head[-1].hash if head else GENESIS_HASH,
                occurred_at=NOW,
                actor="other-process",
            )
            await super().append([rival])
        await super().append(events, idempotency=idempotency)


async def test_record__empty_stream__first_event_is_version_1_on_genesis() -> None:
    store = InMemoryEventStore()
    event = await _journal(store).record(
        DeadLetterPurgedPayload(letter=REF), actor="ops-alice", reason="poison", correlation_id="req-1"
    )
    assert (event.flag_key, event.version, event.prev_hash) == (DEAD_LETTERS_STREAM, 1, GENESIS_HASH)
    assert (event.type, event.actor, event.reason, event.correlation_id) == (
        "DeadLetterPurged",
        "ops-alice",
        "poison",
        "req-1",
    )
    assert event.occurred_at == NOW and event.is_intact()
    assert read_payload(event) == DeadLetterPurgedPayload(letter=REF)
    assert await store.read_stream(DEAD_LETTERS_STREAM) == [event]


async def test_record__several_actions__chain_each_on_the_previous() -> None:
    store = InMemoryEventStore()
    journal = _journal(store)
    first = await journal.record(DeadLetterPurgedPayload(letter=REF), actor="a", reason="r")
    second = await journal.record(DeadLettersRedrivenPayload(letters=(REF,)), actor="b", reason=None)
    assert (second.version, second.prev_hash) == (2, first.hash)
    assert verify_chain(await store.read_stream(DEAD_LETTERS_STREAM)) is None


async def test_record__another_process_appends_first__retries_on_the_new_head() -> None:
    store = RacingStore(races=3)
    event = await _journal(store).record(DeadLetterPurgedPayload(letter=REF), actor="me", reason="r")
    stream = await store.read_stream(DEAD_LETTERS_STREAM)
    assert event.version == 4 and [e.actor for e in stream] == ["other-process"] * 3 + ["me"]
    assert verify_chain(stream) is None


async def test_record__head_keeps_moving__raises_contended_after_max_attempts() -> None:
    store = RacingStore(races=3)
    with pytest.raises(OperationsContended) as caught:
        await _journal(store, max_attempts=2).record(
            DeadLetterPurgedPayload(letter=REF), actor="me", reason="r"
        )
    assert caught.value.retriable and caught.value.http_status == 503
    assert [e.actor for e in await store.read_stream(DEAD_LETTERS_STREAM)] == ["other-process"] * 2


async def test_record__concurrent_callers_of_one_journal__gapless_without_conflicts() -> None:
    store = InMemoryEventStore()
    journal = _journal(store, max_attempts=1)  # one process serialises: no retry needed
    await asyncio.gather(
        *(journal.record(DeadLetterPurgedPayload(letter=REF), actor=f"a{n}", reason="r") for n in range(20))
    )
    stream = await store.read_stream(DEAD_LETTERS_STREAM)
    assert [e.version for e in stream] == list(range(1, 21)) and verify_chain(stream) is None


async def test_record__stream_outside_ops_prefix__refused() -> None:
    with pytest.raises(ValueError, match="ops:"):
        await _journal(InMemoryEventStore()).record(
            DeadLetterPurgedPayload(letter=REF), actor="me", reason="r", stream="checkout"
        )
