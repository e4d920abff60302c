"""``flagstream run``: the whole platform in the foreground (``make run``).

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), applies the
migrations, creates the topics, mints an admin API key, then runs the API, the relay, the
projector and the rollback worker as child processes. Ctrl-C (or SIGTERM) stops the children
with SIGTERM (SIGKILL after a bound), then the stack; nothing is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

__all__ = ["default_api_workers", "register"]

_WORKERS = ("workers.relay", "workers.projector", "workers.rollback")
_STOP_GRACE_SECONDS = 15.0


def register(app: typer.Typer) -> None:
    app.command("run", help="Start the platform locally (API, relay, projector, rollback); Ctrl-C stops it.")(
        run
    )


PortOption = Annotated[int, typer.Option(help="API port (0 = a free port).")]
DataDirOption = Annotated[Path, typer.Option(help="Where the local servers keep their data.")]
ApiWorkersOption = Annotated[
    int | None,
    typer.Option(min=1, help="API processes sharing the port (SO_REUSEPORT); default: one per core."),
]


def default_api_workers() -> int:
    """One API process per core available to this process (at least one)."""
    return max(1, len(os.sched_getaffinity(0)))


def run(
    port: PortOption = 8080,
    data_dir: DataDirOption = Path(".runtime-data"),
    api_workers: ApiWorkersOption = None,
) -> None:
    from runtime.devstack import open_stack
    from runtime.processes import find_free_port
    from runtime.settings import SettingsError, load_settings

    try:
        settings = load_settings(data_dir=str(data_dir))
    except SettingsError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    typer.echo("flagstream: starting the local stack (tansu, redis-server, PostgreSQL)...", err=True)
    stack = open_stack(settings, durable=True, stop_at_exit=True)
    children: list[subprocess.Popen[bytes]] = []
    stopping = {"flag": False}

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        env = {**os.environ, **stack.environment()}
        api_port = port or find_free_port()
        secret = asyncio.run(_prepare(stack.database_url, stack.kafka_bootstrap))
        serve = [sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(api_port)]
        workers = api_workers or default_api_workers()
        for _ in range(workers):
            children.append(_spawn([*serve, "--reuse-port"] if workers > 1 else serve, env))
        for module in _WORKERS:
            if _module_exists(module):
                children.append(_spawn([sys.executable, "-m", module], env))
        _wait_until_serving(f"http://127.0.0.1:{api_port}/healthz", children, stopping)
        typer.echo("")
        typer.echo(
            f"  Flagstream API   http://127.0.0.1:{api_port}   (OpenAPI: http://127.0.0.1:{api_port}/docs;"
            f" {workers} API process{'es' if workers > 1 else ''})"
        )
        typer.echo(f"  Admin API key    {secret}")
        typer.echo(f"  Console          http://127.0.0.1:{api_port}/ui   (sign in with the key above)")
        typer.echo(
            f"  Try: curl -H 'Authorization: Bearer {secret}' http://127.0.0.1:{api_port}/api/v1/flags"
        )
        typer.echo("  Ctrl-C stops everything.")
        typer.echo("")
        while not stopping["flag"]:
            for child in children:
                if child.poll() is not None:
                    typer.echo(
                        f"flagstream: {_describe(child)} exited with {child.returncode}; stopping",
                        err=True,
                    )
                    stopping["flag"] = True
            time.sleep(0.2)  # supervisor tick: waiting for a signal or a child to exit
    finally:
        _stop_children(children)
        typer.echo("flagstream: stopping the local stack...", err=True)
        stack.stop()
        typer.echo("flagstream: stopped.", err=True)


async def _prepare(database_url: str, bootstrap: str) -> str:
    from events.kafka.adapter import ensure_topics, flag_events_spec, metric_alerts_spec
    from events.store.db import apply_migrations, create_pool
    from events.store.keys import ApiKeyStore
    from runtime.settings import load_settings

    await apply_migrations(database_url)
    settings = load_settings(database_url=database_url, kafka_bootstrap_servers=bootstrap)
    await ensure_topics(
        bootstrap,
        [flag_events_spec(settings.flag_events_topic), metric_alerts_spec(settings.metric_alerts_topic)],
    )
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        _, secret = await ApiKeyStore(pool).create("local-admin", "admin")
    finally:
        await pool.close()
    return secret


def _wait_until_serving(url: str, children: list[subprocess.Popen[bytes]], stopping: dict[str, bool]) -> None:
    """Print the banner only once the API answers (bounded): a key shown earlier would be refused."""
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopping["flag"]:
        if any(child.poll() is not None for child in children):
            return
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling the API's liveness, bounded by the deadline
    typer.echo("flagstream: the API did not answer within 60 s; see the logs above", err=True)


def _describe(child: subprocess.Popen[bytes]) -> str:
    args = child.args
    return " ".join(str(a) for a in args[2:3]) if isinstance(args, list) else str(args)


def _module_exists(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
