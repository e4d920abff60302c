"""The command path above the store port, on the in-memory adapter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from core.commands import (
    ArchiveSegment,
    CreateFlag,
    CreateSegment,
    DisableFlag,
    EnableFlag,
    SetEnvironmentConfig,
    UpdateFlagMetadata,
)
from core.envelope import Event, verify_chain
from core.errors import FlagNotFound, InvalidCommand, InvalidConfiguration, SegmentInUse, VersionConflict
from core.model import EnvironmentConfig, Flag, Segment
from events.commands.service import CommandMeta, CommandService
from events.errors import IdempotencyKeyReused
from events.store.idempotency import IdempotencyRecord, IdempotencyWrite
from events.store.memory import InMemoryEventStore

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _service(store: InMemoryEventStore | None = None) -> tuple[CommandService, InMemoryEventStore]:
    store = store or InMemoryEventStore()
    return CommandService(store, clock=lambda: NOW, new_id=uuid.uuid4), store


def _config(**overrides: object) -> EnvironmentConfig:
    data: dict[str, object] = {"enabled": True, "default": {"variation": "off"}, **overrides}
    return EnvironmentConfig.model_validate(data)


META = CommandMeta(actor="alice", correlation_id="req-1")


async def test_execute__create_then_enable__events_chained_with_actor_and_correlation() -> None:
    service, store = _service()

    created = await service.execute(CreateFlag(flag=Flag(key="checkout")), META)
    configured = await service.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=_config(enabled=False)),
        META,
    )
    enabled = await service.execute(EnableFlag(flag_key="checkout", environment="production"), META)

    events = await store.read_stream("checkout")
    assert [e.version for e in events] == [1, 2, 3]
    assert (created.status, configured.status, enabled.status) == (201, 200, 200)
    assert enabled.version == 3 and enabled.response["event_id"] == str(events[-1].event_id)
    assert {e.actor for e in events} == {"alice"} and {e.correlation_id for e in events} == {"req-1"}
    assert verify_chain(events) is None


async def test_execute__stale_expected_version__conflict_names_current_version() -> None:
    service, _ = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)

    with pytest.raises(VersionConflict) as caught:
        await service.execute(UpdateFlagMetadata(flag_key="checkout", name="x", expected_version=0), META)

    assert caught.value.current_version == 1


class _YieldingStore(InMemoryEventStore):
    """Yields to the loop around every read and append, as a networked store does, and counts how
    many calls were in flight at once (the in-memory store alone never yields: no race at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.conflicts = 0

    async def _pause(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1

    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]:
        await self._pause()
        return await super().read_stream(stream_key, to_version=to_version)

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        await self._pause()
        return await super().find_idempotency(principal, key)

    async def append(self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None) -> None:
        await self._pause()
        try:
            await super().append(events, idempotency=idempotency)
        except VersionConflict:
            self.conflicts += 1
            raise


async def test_execute__unpinned_commands_race__both_land_in_order() -> None:
    # Two services (two API processes) on one store that yields: their commands really interleave.
    store = _YieldingStore()
    first, _ = _service(store)
    second, _ = _service(store)
    await first.execute(CreateFlag(flag=Flag(key="checkout")), META)

    await asyncio.gather(
        *(
            (first if i % 2 else second).execute(UpdateFlagMetadata(flag_key="checkout", name=f"n{i}"), META)
            for i in range(10)
        )
    )

    events = await store.read_stream("checkout")
    assert store.peak > 1 and store.conflicts > 0  # the race happened and was retried
    assert [e.version for e in events] == list(range(1, 12))
    assert verify_chain(events) is None


async def test_execute__same_key_in_flight_twice_in_one_process__both_get_the_first_answer() -> None:
    store = _YieldingStore()
    service, _ = _service(store)
    meta = CommandMeta(actor="alice", idempotency_key="k1", request_hash="h1")

    create = CreateFlag(flag=Flag(key="checkout"))
    answers = await asyncio.gather(*(service.execute(create, meta) for _ in range(2)))

    assert [a.status for a in answers] == [201, 201]
    assert answers[0].response == answers[1].response and sorted(a.replayed for a in answers) == [False, True]
    assert await store.current_version("checkout") == 1


async def test_execute__same_key_in_flight_in_two_processes__both_get_the_first_answer() -> None:
    store = _YieldingStore()
    services = [_service(store)[0] for _ in range(2)]
    meta = CommandMeta(actor="alice", idempotency_key="k1", request_hash="h1")

    create = CreateFlag(flag=Flag(key="checkout"))
    answers = await asyncio.gather(*(s.execute(create, meta) for s in services))

    assert [a.status for a in answers] == [201, 201] and answers[0].response == answers[1].response
    assert await store.current_version("checkout") == 1


async def test_execute__no_op_keeps_its_key__same_key_other_body_rejected() -> None:
    service, store = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)
    await service.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=_config()), META
    )
    noop = CommandMeta(actor="alice", idempotency_key="k1", request_hash="h1")

    first = await service.execute(EnableFlag(flag_key="checkout", environment="production"), noop)
    again = await service.execute(EnableFlag(flag_key="checkout", environment="production"), noop)

    assert first.response["changed"] is False and again.replayed and again.response == first.response
    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            DisableFlag(flag_key="checkout", environment="production"),
            CommandMeta(actor="alice", idempotency_key="k1", request_hash="h2"),
        )
    assert await store.current_version("checkout") == 2


async def test_execute__same_idempotency_key_and_body__first_response_no_second_event() -> None:
    service, store = _service()
    meta = CommandMeta(actor="alice", idempotency_key="k1", request_hash="h1")

    first = await service.execute(CreateFlag(flag=Flag(key="checkout")), meta)
    again = await service.execute(CreateFlag(flag=Flag(key="checkout")), meta)

    assert again.replayed and again.response == first.response and again.status == 201
    assert await store.current_version("checkout") == 1


async def test_execute__same_idempotency_key_other_body__rejected() -> None:
    service, _ = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), CommandMeta("alice", None, None, "k1", "h1"))

    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            CreateFlag(flag=Flag(key="other")), CommandMeta("alice", None, None, "k1", "h2")
        )


async def test_execute__rule_names_unknown_segment__invalid_configuration_with_path() -> None:
    service, _ = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)
    config = _config(
        rules=[
            {
                "id": "beta",
                "when": {"attribute": "user", "op": "in_segment", "values": ["beta"]},
                "serve": {"variation": "on"},
            }
        ]
    )

    with pytest.raises(InvalidConfiguration) as caught:
        await service.execute(
            SetEnvironmentConfig(flag_key="checkout", environment="production", config=config), META
        )

    assert any("rules[0]" in d["path"] for d in caught.value.details)


async def test_execute__segment_exists__rule_accepted_and_archive_refused_while_used() -> None:
    service, _ = _service()
    await service.execute(CreateSegment(segment=Segment(key="beta", included=("u1",))), META)
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)
    config = _config(
        rules=[
            {
                "id": "beta",
                "when": {"attribute": "user", "op": "in_segment", "values": ["beta"]},
                "serve": {"variation": "on"},
            }
        ]
    )
    await service.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=config), META
    )

    with pytest.raises(SegmentInUse):
        await service.execute(ArchiveSegment(segment_key="beta"), META)


async def test_execute__prerequisite_cycle__refused() -> None:
    service, _ = _service()
    for key in ("a", "b"):
        await service.execute(CreateFlag(flag=Flag(key=key)), META)
    needs_b = _config(prerequisites=[{"flag": "b", "variation": "on"}])
    needs_a = _config(prerequisites=[{"flag": "a", "variation": "on"}])
    await service.execute(SetEnvironmentConfig(flag_key="a", environment="production", config=needs_b), META)

    with pytest.raises(InvalidConfiguration):
        await service.execute(
            SetEnvironmentConfig(flag_key="b", environment="production", config=needs_a), META
        )


async def test_rollback_command__restores_config_at_version_and_lists_undone_versions() -> None:
    service, store = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)
    await service.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=_config(enabled=False)),
        META,
    )
    await service.execute(EnableFlag(flag_key="checkout", environment="production"), META)

    command = await service.rollback_command("checkout", "production", 2, reason="bad", expected_version=3)
    outcome = await service.execute(command, META)

    state = await service.load_flag("checkout")
    assert outcome.version == 4 and command.undone_versions == (3,)
    assert state.flag is not None and state.flag.environments["production"].enabled is False
    assert (await store.read_stream("checkout"))[-1].type == "FlagRolledBack"


async def test_rollback_command__unknown_version__invalid_command() -> None:
    service, _ = _service()
    await service.execute(CreateFlag(flag=Flag(key="checkout")), META)

    with pytest.raises(InvalidCommand):
        await service.rollback_command("checkout", "production", 9, reason=None, expected_version=None)


async def test_execute__absent_flag__not_found() -> None:
    service, _ = _service()

    with pytest.raises(FlagNotFound):
        await service.execute(EnableFlag(flag_key="ghost", environment="production"), META)


async def test_execute__segment_referencing_segment__accepted_and_archive_of_used_segment_refused() -> None:
    service, _ = _service()
    await service.execute(CreateSegment(segment=Segment(key="staff", included=("u1",))), META)
    nested = Segment(key="beta", when={"attribute": "user", "op": "in_segment", "values": ["staff"]})

    await service.execute(CreateSegment(segment=nested), META)

    with pytest.raises(SegmentInUse):
        await service.execute(ArchiveSegment(segment_key="staff"), META)


async def test_execute__cache_behind_another_writer__no_op_and_expected_version_decided_on_fresh_state() -> (
    None
):
    """Given two services on one store (two API processes), when one changes the flag, the other's cached
    state is behind: a command that looks like a no-op on it, or pins the real version, is decided afresh."""
    store = InMemoryEventStore()
    first, _ = _service(store)
    second, _ = _service(store)
    await first.execute(CreateFlag(flag=Flag(key="checkout")), META)
    await first.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=_config()), META
    )
    await second.execute(UpdateFlagMetadata(flag_key="checkout", name="cached in second"), META)  # v3
    await first.execute(DisableFlag(flag_key="checkout", environment="production"), META)  # v4 by first

    enabled = await second.execute(EnableFlag(flag_key="checkout", environment="production"), META)
    renamed = await second.execute(
        UpdateFlagMetadata(flag_key="checkout", name="x", expected_version=5), META
    )

    assert enabled.version == 5 and enabled.events
    assert renamed.version == 6
    state = await first.load_flag("checkout")
    assert state.flag is not None and state.flag.environments["production"].enabled is True
