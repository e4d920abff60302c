"""KeyNoticeListener on a real Postgres: notices arrive, a lost connection is re-established (and
every cached key forgotten), and a listener that could not connect at start keeps trying."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import pytest
from typer.testing import CliRunner

from cli.keys import app as keys_cli
from events.commands.keys import KEY_NOTICE_CHANNEL
from events.store.db import apply_migrations, create_pool
from events.store.key_notices import KeyNoticeListener
from events.store.keys import ApiKeyStore, Role

pytestmark = pytest.mark.integration


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # polling a condition, bounded by the deadline


async def _notify(dsn: str, payload: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", KEY_NOTICE_CHANNEL, payload)
    finally:
        await conn.close()


async def test_listener__notice_then_lost_connection__forgets_all_and_listens_again(
    database_url: str,
) -> None:
    seen: list[str | None] = []
    listener = KeyNoticeListener(database_url, KEY_NOTICE_CHANNEL, seen.append, retry_seconds=0.05)
    await listener.start()
    try:
        await _notify(database_url, "key_aaaaaaaaaaaaaaaa")
        await _until(lambda: "key_aaaaaaaaaaaaaaaa" in seen)

        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
        finally:
            await admin.close()
        seen.clear()
        await _until(lambda: listener.connected and None in seen)
        await _notify(database_url, "key_bbbbbbbbbbbbbbbb")
        await _until(lambda: "key_bbbbbbbbbbbbbbbb" in seen)
    finally:
        await listener.close()


async def test_listener__database_missing_at_start__does_not_fail_and_connects_later(
    database_url: str,
) -> None:
    name = f"late_{uuid.uuid4().hex[:10]}"
    base = database_url.rpartition("/")[0]
    dsn = f"{base}/{name}"
    seen: list[str | None] = []
    listener = KeyNoticeListener(dsn, KEY_NOTICE_CHANNEL, seen.append, retry_seconds=0.05)
    await listener.start()  # must not raise: the API starts, the TTL bounds revocations meanwhile
    admin = await asyncpg.connect(database_url)
    try:
        assert not listener.connected
        await admin.execute(f'CREATE DATABASE "{name}"')
        await _until(lambda: listener.connected)
        await _notify(dsn, "key_cccccccccccccccc")
        await _until(lambda: "key_cccccccccccccccc" in seen)
    finally:
        await listener.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_cli_revoke__sends_the_notice_the_api_sends(fresh_database: str) -> None:
    database_url = fresh_database
    await apply_migrations(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        key_id, _ = await ApiKeyStore(pool).create("cli-revoke-" + uuid.uuid4().hex[:6], Role.READER)
    finally:
        await pool.close()
    seen: list[str | None] = []
    listener = KeyNoticeListener(database_url, KEY_NOTICE_CHANNEL, seen.append, retry_seconds=0.05)
    await listener.start()
    try:
        await _until(lambda: listener.connected)
        env = {"DATABASE_URL": database_url, "FLAGSTREAM_DATABASE_URL": database_url}
        result = await asyncio.to_thread(CliRunner().invoke, keys_cli, ["revoke", key_id], env=env)
        assert result.exit_code == 0, result.output

        await _until(lambda: key_id in seen)
    finally:
        await listener.close()


async def test_store_revoke__unknown_or_already_revoked__no_notice(fresh_database: str) -> None:
    database_url = fresh_database
    await apply_migrations(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    seen: list[str | None] = []
    listener = KeyNoticeListener(database_url, KEY_NOTICE_CHANNEL, seen.append, retry_seconds=0.05)
    await listener.start()
    try:
        await _until(lambda: listener.connected)
        keys = ApiKeyStore(pool)
        key_id, _ = await keys.create("twice-" + uuid.uuid4().hex[:6], Role.READER)
        assert await keys.revoke(key_id) is True
        assert await keys.revoke(key_id) is False
        assert await keys.revoke("key_0000000000000000") is False
        await _notify(database_url, "key_ffffffffffffffff")  # a marker: notices arrive in order

        await _until(lambda: "key_ffffffffffffffff" in seen)
        assert [s for s in seen if s is not None] == [key_id, "key_ffffffffffffffff"]
    finally:
        await listener.close()
        await pool.close()


async def test_cli_list__rotated_and_expired_keys__state_shown(fresh_database: str) -> None:
    await apply_migrations(fresh_database)
    pool = await create_pool(fresh_database, min_size=1, max_size=1)
    try:
        keys = ApiKeyStore(pool)
        in_grace, _ = await keys.create("in-grace", Role.READER)
        expired, _ = await keys.create("expired", Role.READER)
        await pool.execute(
            "UPDATE api_keys SET expires_at = now() + interval '1 hour' WHERE id = $1", in_grace
        )
        await pool.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = $1", expired
        )
    finally:
        await pool.close()
    env = {"DATABASE_URL": fresh_database, "FLAGSTREAM_DATABASE_URL": fresh_database}

    result = await asyncio.to_thread(CliRunner().invoke, keys_cli, ["list"], env=env)

    assert result.exit_code == 0, result.output
    states = {line.split("\t")[0]: line.split("\t")[4] for line in result.output.splitlines()}
    assert states[in_grace].startswith("active until ") and states[expired].startswith("expired ")
