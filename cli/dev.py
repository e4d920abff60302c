"""``flagstream dev up | down | status``: the local stack (tansu, redis-server, PostgreSQL 15).

``up`` starts the servers in the background and prints ``export`` lines, so
``eval "$(flagstream dev up)"`` points the current shell at them. Progress and errors go to stderr.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from monitoring.logging import configure_logging
from runtime.devstack import Stack, StackError, read_status, read_urls, stop_recorded, write_state
from runtime.settings import SettingsError, load_settings

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Manage the local stack (tansu, redis-server, PostgreSQL).")

_VARIABLES = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "redis": "REDIS_URL", "postgres": "DATABASE_URL"}

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Folder of the local stack [default: FLAGSTREAM_DATA_DIR or .runtime-data]."
    ),
]


@app.callback()
def configure() -> None:
    """Send logs to stderr: stdout carries only the ``export`` lines and the status table."""
    configure_logging("INFO", json=False, stream=sys.stderr)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _resolve_data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    try:
        return Path(load_settings().data_dir)
    except SettingsError as e:
        raise _fail(str(e)) from e


def _print_exports(urls: dict[str, str]) -> None:
    for name, value in urls.items():
        typer.echo(f"export {name}={value}")


@app.command()
def up(
    data_dir: DataDirOption = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete the PostgreSQL data first.")] = False,
    fsync: Annotated[
        bool, typer.Option("--fsync/--no-fsync", help="PostgreSQL fsync (off: faster, unsafe).")
    ] = True,
) -> None:
    """Start the servers not given by DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS; print exports."""
    try:
        settings = load_settings()
    except SettingsError as e:
        raise _fail(str(e)) from e
    folder = data_dir if data_dir is not None else Path(settings.data_dir)
    statuses = read_status(folder)
    if statuses is not None and statuses and all(s.running for s in statuses):
        typer.echo(f"# the local stack in {folder} is already running", err=True)
        _print_exports(read_urls(folder) or {})
        return
    if statuses is not None:
        stop_recorded(folder)  # a half-dead stack: clear it before starting again
    if fresh:
        shutil.rmtree(folder / "postgres", ignore_errors=True)
    try:
        stack = Stack.start(
            folder,
            durable=fsync,
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            kafka_bootstrap=settings.kafka_bootstrap_servers,
        )
    except StackError as e:
        raise _fail(str(e)) from e
    write_state(stack)
    stack.detach()  # the servers outlive this command: `flagstream dev down` stops them by pid
    started = {server.name for server in stack.managed}
    for server_name, variable in _VARIABLES.items():
        if server_name not in started:
            typer.echo(f"# {server_name}: not started, {variable} is set in the environment", err=True)
    typer.echo(f"# local stack running in {stack.data_dir}; stop it with: flagstream dev down", err=True)
    _print_exports(stack.environment())


@app.command()
def status(data_dir: DataDirOption = None) -> None:
    """Show each recorded server, its URL, pid and log; exit 1 if any is down, 3 if none is recorded."""
    folder = _resolve_data_dir(data_dir)
    try:
        statuses = read_status(folder)
    except StackError as e:
        raise _fail(str(e)) from e
    if statuses is None:
        typer.echo(f"no local stack recorded in {folder}")
        raise typer.Exit(3)
    for s in statuses:
        state = "running" if s.running else "STOPPED"
        typer.echo(f"{s.name:<9} {state:<8} pid={s.pid:<8} {s.url}  log={s.log}")
    if not statuses:
        typer.echo("(every server comes from the environment)")
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@app.command()
def down(data_dir: DataDirOption = None) -> None:
    """Stop the recorded servers (SIGTERM, then SIGKILL after a bound) and verify none is left."""
    folder = _resolve_data_dir(data_dir)
    try:
        stopped = stop_recorded(folder)
    except StackError as e:
        raise _fail(str(e)) from e
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
