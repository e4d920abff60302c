"""The ports of the write side, as Protocols, and the rules every adapter shares.

- :class:`EventStore` — what the command service needs: read a stream, append with the
  optimistic version check, and the idempotency records written with the events.
- :class:`Outbox` — what the relay needs: committed events in a safe order, and a checkpoint.
- :class:`EventPublisher` — where the relay sends events (Kafka in production).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from core.envelope import Event
from events.store.idempotency import IdempotencyRecord, IdempotencyWrite

__all__ = [
    "EventPublisher",
    "EventStore",
    "Outbox",
    "PublishedRecord",
    "RelayPosition",
    "StoredEvent",
    "plan_append",
]


@dataclass(frozen=True, order=True, slots=True)
class RelayPosition:
    """The relay's cursor: ``(txid, seq)`` of the last event published (``(0, 0)`` = nothing yet)."""

    txid: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store holds it: its append sequence, its transaction id and the envelope."""

    seq: int
    txid: int
    event: Event

    @property
    def position(self) -> RelayPosition:
        return RelayPosition(self.txid, self.seq)


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """Where the log acknowledged one event: the relay records the highest offset per partition."""

    event_id: UUID
    topic: str
    partition: int
    offset: int


class EventStore(Protocol):
    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]: ...

    async def current_version(self, stream_key: str) -> int: ...

    async def append(
        self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None
    ) -> None: ...

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None: ...

    async def remember_answer(self, idempotency: IdempotencyWrite) -> None:
        """Keep the answer of a command that wrote no event (a no-op) under its key;
        ``DuplicateIdempotencyKey`` when a live record with that key exists."""
        ...

    async def stream_keys(self) -> list[str]: ...


class Outbox(Protocol):
    async def read_committed_after(self, position: RelayPosition, limit: int) -> list[StoredEvent]: ...

    async def load_checkpoint(self, name: str) -> RelayPosition: ...

    async def save_checkpoint(self, name: str, position: RelayPosition) -> None: ...

    async def reset_checkpoint(self, name: str) -> None:
        """Back to the beginning: everything is published again (the log lost it)."""
        ...

    async def backlog(self, position: RelayPosition) -> tuple[int, datetime | None]:
        """How many committed-or-not events lie after ``position``, and when the oldest occurred."""
        ...


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> Sequence[PublishedRecord]:
        """Publish in order and await every ack; one record per event, in the events' order."""
        ...


def plan_append(events: Sequence[Event]) -> dict[str, int]:
    """Check a batch is well formed; returns each stream's first version, in order of appearance.

    Within a batch each stream's versions must be consecutive and event ids unique — a caller
    bug otherwise (``ValueError``), not a conflict.
    """
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    ids = set()
    for event in events:
        if event.event_id in ids:
            raise ValueError(f"event id {event.event_id} appears twice in one append")
        ids.add(event.event_id)
        key = event.flag_key
        if key in last and event.version != last[key] + 1:
            raise ValueError(f"versions of {key!r} in one append must be consecutive")
        first.setdefault(key, event.version)
        last[key] = event.version
    return first
