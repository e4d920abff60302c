"""One contract for every :class:`events.ports.EventStore` adapter.

Subclasses provide :meth:`EventStoreContract.make_store`; the in-memory adapter runs it in
``tests/unit/events``, the Postgres adapter in ``tests/integration/events``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.errors import DuplicateIdempotencyKey, IdempotencyKeyReused, VersionConflict
from events.ports import EventStore
from events.store.idempotency import IDEMPOTENCY_TTL, IdempotencyWrite, compute_request_hash, replay_response
from tests.unit.events.factories import make_chain, make_event

_HASH_A = compute_request_hash("POST", "/api/v1/flags", {"key": "a"})
_HASH_B = compute_request_hash("POST", "/api/v1/flags", {"key": "b"})


def _write(key: str = "k1", *, request_hash: str = _HASH_A, principal: str = "alice") -> IdempotencyWrite:
    return IdempotencyWrite(principal=principal, key=key, request_hash=request_hash, status=201,
                            response={"version": 1, "ids": ["x"]})


class EventStoreContract:
    async def make_store(self, *, idempotency_ttl: timedelta = IDEMPOTENCY_TTL) -> EventStore:
        raise NotImplementedError

    async def test_append__new_stream__reads_back_same_events_in_order(self) -> None:
        store = await self.make_store()
        events = make_chain("checkout", 3)
        await store.append(events)
        assert await store.read_stream("checkout") == events
        assert await store.current_version("checkout") == 3

    async def test_read_stream__to_version__stops_there(self) -> None:
        store = await self.make_store()
        events = make_chain("checkout", 4)
        await store.append(events)
        assert await store.read_stream("checkout", to_version=2) == events[:2]

    async def test_read_stream__unknown_stream__is_empty_at_version_zero(self) -> None:
        store = await self.make_store()
        assert await store.read_stream("nope") == []
        assert await store.current_version("nope") == 0

    async def test_append__successive_appends__extend_the_stream(self) -> None:
        store = await self.make_store()
        events = make_chain("checkout", 3)
        await store.append(events[:1])
        await store.append(events[1:])
        assert await store.read_stream("checkout") == events

    async def test_append__version_already_taken__conflict_names_current_version(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("checkout", 2))
        with pytest.raises(VersionConflict) as caught:
            await store.append([make_event("checkout", 2)])
        assert caught.value.current_version == 2
        assert caught.value.expected_version == 1
        assert len(await store.read_stream("checkout")) == 2

    async def test_append__version_gap__conflict_and_nothing_written(self) -> None:
        store = await self.make_store()
        with pytest.raises(VersionConflict) as caught:
            await store.append([make_event("checkout", 3)])
        assert caught.value.current_version == 0
        assert await store.read_stream("checkout") == []

    async def test_append__non_consecutive_batch__refused_as_caller_bug(self) -> None:
        store = await self.make_store()
        with pytest.raises(ValueError, match="consecutive"):
            await store.append([make_event("checkout", 1), make_event("checkout", 3)])

    async def test_append__two_streams_one_conflicting__nothing_written(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("b", 1))
        with pytest.raises(VersionConflict):
            await store.append([make_event("a", 1), make_event("b", 1)])
        assert await store.read_stream("a") == []

    async def test_append__event_id_already_stored__refused_as_caller_bug(self) -> None:
        store = await self.make_store()
        event = make_event("a", 1)
        await store.append([event])
        again = event.model_copy(update={"flag_key": "b"})
        with pytest.raises(ValueError, match="already stored"):
            await store.append([again])

    async def test_stream_keys__lists_every_stream(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("b", 1))
        await store.append(make_chain("a", 2))
        assert await store.stream_keys() == ["a", "b"]

    async def test_idempotency__written_with_events__found_with_same_response(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("checkout", 1), idempotency=_write())
        record = await store.find_idempotency("alice", "k1")
        assert record is not None
        assert replay_response(record, _HASH_A) == (201, {"version": 1, "ids": ["x"]})

    async def test_idempotency__same_key_other_request__reused_error(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("checkout", 1), idempotency=_write())
        record = await store.find_idempotency("alice", "k1")
        assert record is not None
        with pytest.raises(IdempotencyKeyReused) as caught:
            replay_response(record, _HASH_B)
        assert caught.value.http_status == 422
        assert caught.value.code == "idempotency_key_reused"

    async def test_idempotency__key_scoped_by_principal(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("checkout", 1), idempotency=_write())
        assert await store.find_idempotency("bob", "k1") is None

    async def test_idempotency__live_key_written_again__refused_and_no_events(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("a", 1), idempotency=_write())
        with pytest.raises(DuplicateIdempotencyKey):
            await store.append(make_chain("b", 1), idempotency=_write())
        assert await store.read_stream("b") == []

    async def test_idempotency__append_conflicts__no_record_kept(self) -> None:
        store = await self.make_store()
        await store.append(make_chain("a", 1))
        with pytest.raises(VersionConflict):
            await store.append([make_event("a", 1)], idempotency=_write())
        assert await store.find_idempotency("alice", "k1") is None

    async def test_idempotency__expired_record__ignored_and_replaced(self) -> None:
        store = await self.make_store(idempotency_ttl=timedelta(0))
        await store.append(make_chain("a", 1), idempotency=_write())
        assert await store.find_idempotency("alice", "k1") is None
        await store.append(make_chain("b", 1), idempotency=_write(request_hash=_HASH_B))
        assert len(await store.read_stream("b")) == 1
