"""``flagstream keys``: create, list and revoke API keys (Postgres at DATABASE_URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from events.store.db import apply_migrations, create_pool
from events.store.keys import ApiKey, ApiKeyStore, Role
from runtime.settings import SettingsError, load_settings

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")


def _run_with_keys(action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    try:
        url = load_settings().database_url
    except SettingsError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    if not url:
        typer.echo("set DATABASE_URL (or FLAGSTREAM_DATABASE_URL) to the Flagstream database", err=True)
        raise typer.Exit(2)

    async def _go() -> T:
        await apply_migrations(url)
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            return await action(ApiKeyStore(pool))
        finally:
            await pool.close()

    return asyncio.run(_go())


@app.command("create")
def create(
    role: Annotated[Role, typer.Option(help="admin | writer | reader | ops | alerts")],
    principal: Annotated[str, typer.Option(help="Who the key acts as (becomes the event actor).")],
) -> None:
    """Create a key and print its secret (shown once; only its hash is stored)."""
    key_id, secret = _run_with_keys(lambda keys: keys.create(principal, role))
    typer.echo(f"key id:  {key_id}", err=True)
    typer.echo(f"role:    {role.value}  principal: {principal}", err=True)
    typer.echo(secret)


@app.command("list")
def list_keys() -> None:
    """List keys (never their secrets)."""
    for key in _run_with_keys(lambda keys: keys.list()):
        state = _state_of(key)
        typer.echo(f"{key.id}\t{key.role.value}\t{key.principal}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id shown by create/list.")]) -> None:
    """Revoke a key: every API process is told at once (the NOTIFY the API sends), so it is refused."""
    if not _run_with_keys(lambda keys: keys.revoke(key_id)):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def _state_of(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
    if key.expires_at is None:
        return "active"
    return f"{'active until' if key.active else 'expired'} {key.expires_at:%Y-%m-%d %H:%M} (rotated)"
