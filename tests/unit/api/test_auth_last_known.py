"""AuthCache.last_known: the key's role when last authenticated, kept through a wholesale cache clear,
dropped by an explicit revocation (used for /readyz details while the key store cannot answer)."""

from __future__ import annotations

from api.auth import AuthCache, Principal

SECRET = "fs_" + "a" * 30
OPS = Principal("ops-bot", "ops", "key-1")


async def _lookup(secret: str) -> Principal | None:
    return OPS if secret == SECRET else None


async def test_last_known__survives_a_wholesale_clear__not_a_revocation() -> None:
    cache = AuthCache(_lookup)
    assert cache.last_known(f"Bearer {SECRET}") is None

    await cache.identify(f"Bearer {SECRET}")
    cache.forget_key(None)
    after_clear = cache.last_known(f"Bearer {SECRET}")
    cache.forget_key("key-1")
    after_revocation = cache.last_known(f"Bearer {SECRET}")

    assert after_clear == OPS
    assert after_revocation is None


async def test_identify__bad_or_unknown_header__none_without_raising() -> None:
    cache = AuthCache(_lookup)
    assert await cache.identify(None) is None
    assert await cache.identify("Basic abc") is None
    assert await cache.identify("Bearer fs_" + "b" * 30) is None
    assert await cache.identify(f"Bearer {SECRET}") == OPS
