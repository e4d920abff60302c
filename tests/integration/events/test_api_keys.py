"""API keys on Postgres: created with a one-time secret, authenticated by its hash, revocable."""

from __future__ import annotations

import asyncpg
import pytest

from events.store.keys import ApiKeyStore, Principal, Role, hash_secret


@pytest.fixture
def keys(pool: asyncpg.Pool) -> ApiKeyStore:
    return ApiKeyStore(pool)


async def test_create__then_authenticate__gives_principal_role_and_key_id(keys: ApiKeyStore) -> None:
    key_id, secret = await keys.create("deploy-bot", Role.WRITER)
    assert secret.startswith("fs_")
    assert await keys.authenticate(secret) == Principal("deploy-bot", Role.WRITER, key_id)


async def test_create__secret_never_stored__only_its_hash(keys: ApiKeyStore, pool: asyncpg.Pool) -> None:
    _, secret = await keys.create("alice", "admin")
    stored = await pool.fetchval("SELECT key_hash FROM api_keys")
    assert stored == hash_secret(secret)
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE key_hash = $1 OR id = $1", secret) == 0


@pytest.mark.parametrize("presented", ["", "null", "undefined", "fs_short", "fs_" + "x" * 43])
async def test_authenticate__malformed_or_unknown__none(keys: ApiKeyStore, presented: str) -> None:
    await keys.create("alice", Role.ADMIN)
    assert await keys.authenticate(presented) is None


async def test_revoke__then_authenticate__none_and_listed_as_revoked(keys: ApiKeyStore) -> None:
    key_id, secret = await keys.create("alice", Role.OPS)
    other_id, other = await keys.create("bob", Role.READER)
    assert await keys.revoke(key_id) is True
    assert await keys.revoke(key_id) is False
    assert await keys.authenticate(secret) is None
    assert await keys.authenticate(other) is not None
    listed = {k.id: k for k in await keys.list()}
    assert listed[key_id].active is False
    assert listed[other_id].active is True


async def test_create__unknown_role__refused(keys: ApiKeyStore) -> None:
    with pytest.raises(ValueError):
        await keys.create("alice", "root")
