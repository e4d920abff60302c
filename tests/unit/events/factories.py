"""Sealed events for tests of the write side."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from core.envelope import GENESIS_HASH, Event, EventDraft, seal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_event(flag_key: str, version: int, *, prev_hash: str = GENESIS_HASH, actor: str = "alice",
               payload: dict[str, object] | None = None) -> Event:
    body = dict(payload or {"on": version % 2 == 0})
    draft = EventDraft(type="FlagToggled", environment="prod", payload=body)
    return seal(draft, event_id=uuid.uuid4(), flag_key=flag_key, version=version, prev_hash=prev_hash,
                occurred_at=T0, actor=actor, reason="test")


def make_chain(flag_key: str, count: int, *, start: int = 1, prev_hash: str = GENESIS_HASH) -> list[Event]:
    """``count`` linked events of one stream, versions ``start .. start + count - 1``."""
    events = []
    for version in range(start, start + count):
        event = make_event(flag_key, version, prev_hash=prev_hash)
        events.append(event)
        prev_hash = event.hash
    return events
