"""The event-store contract on the in-memory adapter (used by unit tests above the port)."""

from __future__ import annotations

from datetime import timedelta

from events.ports import EventStore
from events.store.idempotency import IDEMPOTENCY_TTL
from events.store.memory import InMemoryEventStore
from tests.unit.events.store_contract import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    async def make_store(self, *, idempotency_ttl: timedelta = IDEMPOTENCY_TTL) -> EventStore:
        return InMemoryEventStore(idempotency_ttl=idempotency_ttl)
