"""An in-memory :class:`events.ports.EventStore` for unit tests of the logic above the port.

It follows the same contract as the Postgres store (one suite, ``tests/*/events/store_contract.py``,
runs against both). It is not an outbox and knows nothing of transactions ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from core.envelope import Event
from events.errors import DuplicateIdempotencyKey, VersionConflict
from events.ports import plan_append
from events.store.idempotency import IDEMPOTENCY_TTL, IdempotencyRecord, IdempotencyWrite

__all__ = ["InMemoryEventStore"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryEventStore:
    def __init__(
        self, *, idempotency_ttl: timedelta = IDEMPOTENCY_TTL, now: Callable[[], datetime] = _utc_now
    ) -> None:
        self._streams: dict[str, list[Event]] = {}
        self._ids: set[object] = set()
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self._ttl = idempotency_ttl
        self._now = now

    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]:
        events = self._streams.get(stream_key, [])
        return [e for e in events if to_version is None or e.version <= to_version]

    async def current_version(self, stream_key: str) -> int:
        return len(self._streams.get(stream_key, []))

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        firsts = plan_append(events)
        if not firsts:
            raise ValueError("append needs at least one event")
        for stream, first in firsts.items():
            current = len(self._streams.get(stream, []))
            if current != first - 1:
                raise VersionConflict(expected_version=first - 1, current_version=current, stream=stream)
        if any(e.event_id in self._ids for e in events):
            raise ValueError("an event with this id is already stored")
        if idempotency is not None:
            self._remember(idempotency)
        for event in events:
            self._streams.setdefault(event.flag_key, []).append(event)
            self._ids.add(event.event_id)

    async def remember_answer(self, idempotency: IdempotencyWrite) -> None:
        self._remember(idempotency)

    def _remember(self, idempotency: IdempotencyWrite) -> None:
        """Synchronous, so an append (version check, record, events) is atomic on the event loop."""
        if self._live_record(idempotency.principal, idempotency.key) is not None:
            raise DuplicateIdempotencyKey(idempotency.key)
        self._idempotency[(idempotency.principal, idempotency.key)] = IdempotencyRecord(
            idempotency.principal, idempotency.key, idempotency.request_hash,
            idempotency.status, idempotency.response, self._now(),
        )

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        return self._live_record(principal, key)

    def _live_record(self, principal: str, key: str) -> IdempotencyRecord | None:
        record = self._idempotency.get((principal, key))
        if record is None or record.created_at <= self._now() - self._ttl:
            return None
        return record

    async def stream_keys(self) -> list[str]:
        return sorted(self._streams)

    async def count(self) -> int:
        return sum(len(s) for s in self._streams.values())
