"""Builders of sealed events and dead letters for the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from core.errors import MalformedEvent
from events.deadletters import KafkaCoordinates, NewDeadLetter, Stage

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def an_event(flag_key: str = "checkout", version: int = 1) -> Event:
    draft = EventDraft(type="FlagToggled", environment="prod", payload={"on": True})
    return seal(
        draft,
        event_id=uuid.uuid4(),
        flag_key=flag_key,
        version=version,
        prev_hash=GENESIS_HASH,
        occurred_at=NOW,
        actor="alice",
    )


def a_letter(
    stage: Stage = "projector",
    flag_key: str = "checkout",
    version: int = 1,
    *,
    error: BaseException | None = None,
    failed_at: datetime | None = None,
    kafka: KafkaCoordinates | None = None,
) -> NewDeadLetter:
    return NewDeadLetter.for_event(
        stage,
        an_event(flag_key, version),
        error or MalformedEvent("cannot apply"),
        kafka=kafka,
        failed_at=failed_at,
    )
