"""Idempotency keys under concurrency, on real Postgres: two requests with one key in flight at once
(in one process, and in two processes = two command services on one database) both get the first
answer; a command that changes nothing keeps its key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from core.commands import CreateFlag, DisableFlag, EnableFlag, SetEnvironmentConfig
from core.model import EnvironmentConfig, Flag
from events.commands.service import CommandMeta, CommandService
from events.errors import IdempotencyKeyReused
from events.store.idempotency import IdempotencyRecord
from events.store.postgres import PostgresEventStore

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
META = CommandMeta(actor="alice", idempotency_key="create-checkout", request_hash="h1")


class _LookupBarrier(PostgresEventStore):
    """Every first look-up of a key waits until ``parties`` requests have looked it up: all of them
    are then in flight before any decides, which is the race (without it, timing decides)."""

    def __init__(self, pool: asyncpg.Pool, barrier: asyncio.Barrier) -> None:
        super().__init__(pool)
        self._barrier = barrier
        self._waited = False

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None:
        found = await super().find_idempotency(principal, key)
        if not self._waited:
            self._waited = True
            async with asyncio.timeout(1.0):
                await self._barrier.wait()
        return found


def _service(store: PostgresEventStore) -> CommandService:
    return CommandService(store, clock=lambda: NOW, new_id=uuid.uuid4)


async def test_same_key_in_flight_in_one_process__both_get_the_first_answer(
    store: PostgresEventStore,
) -> None:
    service = _service(store)

    create = CreateFlag(flag=Flag(key="checkout"))
    answers = await asyncio.gather(*(service.execute(create, META) for _ in range(2)))

    assert [a.status for a in answers] == [201, 201]
    assert answers[0].response == answers[1].response
    assert sorted(a.replayed for a in answers) == [False, True]
    assert await store.current_version("checkout") == 1


async def test_same_key_in_flight_in_two_processes__both_get_the_first_answer(pool: asyncpg.Pool) -> None:
    barrier = asyncio.Barrier(2)
    stores = [_LookupBarrier(pool, barrier) for _ in range(2)]

    answers = await asyncio.gather(
        *(_service(s).execute(CreateFlag(flag=Flag(key="checkout")), META) for s in stores)
    )

    assert [a.status for a in answers] == [201, 201]
    assert answers[0].response == answers[1].response
    assert await stores[0].current_version("checkout") == 1


async def test_same_key_two_processes_pinned_version__both_get_the_first_answer(pool: asyncpg.Pool) -> None:
    await _service(PostgresEventStore(pool)).execute(
        CreateFlag(flag=Flag(key="checkout", environments={"production": _config(enabled=False)})),
        CommandMeta(actor="alice"),
    )
    barrier = asyncio.Barrier(2)
    stores = [_LookupBarrier(pool, barrier) for _ in range(2)]
    meta = CommandMeta(actor="alice", idempotency_key="enable-1", request_hash="h-enable")
    command = EnableFlag(flag_key="checkout", environment="production", expected_version=1)

    answers = await asyncio.gather(*(_service(s).execute(command, meta) for s in stores))

    assert [a.status for a in answers] == [200, 200] and answers[0].response == answers[1].response
    assert await stores[0].current_version("checkout") == 2


async def test_no_op_keeps_its_key__same_key_other_body_is_rejected(store: PostgresEventStore) -> None:
    service = _service(store)
    await service.execute(CreateFlag(flag=Flag(key="checkout")), CommandMeta(actor="alice"))
    await service.execute(
        SetEnvironmentConfig(flag_key="checkout", environment="production", config=_config(enabled=True)),
        CommandMeta(actor="alice"),
    )
    noop = CommandMeta(actor="alice", idempotency_key="k-noop", request_hash="h-enable")

    first = await service.execute(EnableFlag(flag_key="checkout", environment="production"), noop)
    again = await _service(store).execute(EnableFlag(flag_key="checkout", environment="production"), noop)

    assert first.response["changed"] is False and again.replayed and again.response == first.response
    with pytest.raises(IdempotencyKeyReused):
        await service.execute(
            DisableFlag(flag_key="checkout", environment="production"),
            CommandMeta(actor="alice", idempotency_key="k-noop", request_hash="h-disable"),
        )
    assert await store.current_version("checkout") == 2


def _config(**overrides: object) -> EnvironmentConfig:
    data: dict[str, object] = {"enabled": True, "default": {"variation": "off"}, **overrides}
    return EnvironmentConfig.model_validate(data)
