"""``flagstream projections``: rebuild the Redis read model from the log, or check it for drift."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from core.errors import FlagstreamError
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.rebuild import DEFAULT_SHADOW, RebuildReport, ShadowRebuild
from runtime.settings import Settings, SettingsError, load_settings
from runtime.statefile import read_urls

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

Environment = Annotated[
    str | None, typer.Option("--environment", "-e", help="Only this environment's documents (default: all).")
]
Shadow = Annotated[str, typer.Option(help="Namespace of the shadow read model.")]


def _servers() -> tuple[Settings, str, str]:
    try:
        settings = load_settings()
    except SettingsError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    recorded = read_urls(Path(settings.data_dir)) or {}
    redis_url = settings.redis_url or recorded.get("REDIS_URL")
    bootstrap = settings.kafka_bootstrap_servers or recorded.get("KAFKA_BOOTSTRAP_SERVERS")
    if not redis_url or not bootstrap:
        typer.echo("set REDIS_URL and KAFKA_BOOTSTRAP_SERVERS (or start `flagstream dev up`)", err=True)
        raise typer.Exit(2)
    return settings, redis_url, bootstrap


def _run(*, switch: bool, environment: str | None, shadow: str) -> RebuildReport:
    settings, redis_url, bootstrap = _servers()

    async def go() -> RebuildReport:
        client = make_redis(redis_url, socket_timeout=settings.redis_socket_timeout_seconds)
        try:
            async with ShadowRebuild(
                client,
                bootstrap_servers=bootstrap,
                topic=settings.flag_events_topic,
                group=settings.projector_group,
                live=Keyspace(settings.redis_namespace),
                shadow=Keyspace(shadow),
            ) as rebuild:
                return await rebuild.run(switch=switch, environment=environment)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except FlagstreamError as e:  # poison event, apply rejected, Redis unavailable
        typer.echo(f"rebuild failed: {e}", err=True)
        raise typer.Exit(1) from e


def _describe(report: RebuildReport) -> str:
    return (
        f"{report.events} events ({report.applied} applied, {report.duplicates} duplicates) "
        f"in {report.seconds:.2f} s ({report.events_per_second:,.0f} events/s)"
    )


@app.command("rebuild")
def rebuild(environment: Environment = None, shadow: Shadow = DEFAULT_SHADOW) -> None:
    """Replay the log from offset 0 into a shadow namespace, then switch readers to it atomically."""
    report = _run(switch=True, environment=environment, shadow=shadow)
    typer.echo(f"rebuilt: {_describe(report)}")
    if not report.switched:
        typer.echo("the shadow never caught up with the live projection: not switched", err=True)
        raise typer.Exit(1)
    typer.echo("switched: readers reload the rebuilt read model")


@app.command("check")
def check(environment: Environment = None, shadow: Shadow = DEFAULT_SHADOW) -> None:
    """Rebuild into the shadow and diff it with the live read model (exit 1 on any drift)."""
    report = _run(switch=False, environment=environment, shadow=shadow)
    typer.echo(f"checked: {_describe(report)}")
    for key in report.drift:
        typer.echo(f"drift: {key}")
    if report.drift:
        raise typer.Exit(1)
    typer.echo("no drift")
