"""The platform on a private stack, arranged so that any piece of it can be broken.

- the servers are the test's own ``private_stack`` (tansu, Redis, Postgres): killed and started
  again through :class:`runtime.managed.ManagedServer` (blocking calls, run in a thread here so
  the load keeps flowing meanwhile);
- the HTTP API runs in this event loop (ASGI through httpx, as ``tests/integration/platform.py``);
- the relay and the projector are real processes (``python -m workers.relay`` /
  ``python -m workers.projector``) that can be SIGKILLed and restarted. A supervisor restarts a
  worker that exits by itself (as ``restart: unless-stopped`` does in docker-compose); every such
  exit is counted and reported, so a worker that crashes on a fault is visible, never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from api.app import create_app
from events.kafka.adapter import ensure_topics, flag_events_spec
from events.store.db import apply_migrations, create_pool
from events.store.keys import ApiKeyStore
from runtime.devstack import Stack
from runtime.managed import ManagedServer
from runtime.settings import Settings, load_settings
from tests.faults.load import ENVIRONMENTS, make_config

__all__ = ["FaultPlatform", "WorkerProcess", "start_fault_platform"]

log = structlog.get_logger("tests.faults.harness")
_REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One worker process (``python -m <module>``), with its output in ``log_path``."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self._env = env
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.crashes: list[int] = []  # exit codes of exits nobody asked for

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"=== start {self.module} at {time.time():.3f}\n".encode())
            out.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=_REPO,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would; waits until the process is gone."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self.kills += 1
        self._process.wait(timeout=10)
        self._process = None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the worker finishes its batch), SIGKILL after ``grace`` seconds."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def reap_crash(self) -> int | None:
        """The exit code if the process ended by itself (recorded as a crash), else None."""
        if self._process is None or (code := self._process.poll()) is None:
            return None
        self.crashes.append(code)
        self._process = None
        return code

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class FaultPlatform:
    stack: Stack
    settings: Settings
    client: httpx.AsyncClient
    keys: dict[str, str]
    relay: WorkerProcess
    projector: WorkerProcess
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def workers(self) -> dict[str, WorkerProcess]:
        return {"relay": self.relay, "projector": self.projector}

    async def request(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}", **kwargs.pop("headers", {})}
        if method != "GET":
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)  # writes require one
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def create_flags(self, keys: list[str]) -> None:
        for key in keys:
            response = await self.request("POST", "/api/v1/flags", json={"key": key, "name": key})
            assert response.status_code == 201, response.text
            for environment in ENVIRONMENTS:  # so that enable / disable are valid from the start
                path = f"/api/v1/flags/{key}/environments/{environment}"
                response = await self.request("PUT", path, json=make_config(0, enabled=False))
                assert response.status_code == 200, response.text

    async def kill_server(self, server: ManagedServer) -> None:
        await asyncio.to_thread(server.kill)

    async def start_server(self, server: ManagedServer) -> None:
        await asyncio.to_thread(server.start)

    async def supervise(self) -> None:
        """Restart any worker that exited by itself, one second later (a process supervisor)."""
        while not self.stop.is_set():
            for name, worker in self.workers.items():
                if (code := worker.reap_crash()) is not None:
                    log.warning("harness.worker_exited", worker=name, exit_code=code, tail=worker.log_tail(8))
                    await asyncio.sleep(1.0)  # a supervisor's restart delay, not a synchronisation
                    worker.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=0.2)

    def worker_report(self) -> dict[str, Any]:
        return {
            name: {"sigkills": w.kills, "crash_exit_codes": w.crashes} for name, w in self.workers.items()
        }


def _worker_env(stack: Stack, settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    env.update(stack.environment())
    env.update(
        {
            "FLAGSTREAM_FLAG_EVENTS_TOPIC": settings.flag_events_topic,
            "FLAGSTREAM_METRIC_ALERTS_TOPIC": settings.metric_alerts_topic,
            "FLAGSTREAM_REDIS_NAMESPACE": settings.redis_namespace,
            "FLAGSTREAM_PROJECTOR_GROUP": settings.projector_group,
            "FLAGSTREAM_LOG_JSON": "false",
            "FLAGSTREAM_RELAY_POLL_INTERVAL_SECONDS": "0.05",
            "FLAGSTREAM_KAFKA_SEND_TIMEOUT_SECONDS": "5",
            "FLAGSTREAM_KAFKA_REQUEST_TIMEOUT_SECONDS": "5",
            "FLAGSTREAM_REDIS_SOCKET_TIMEOUT_SECONDS": "2",
            "FLAGSTREAM_DB_COMMAND_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def _create_keys(database_url: str) -> dict[str, str]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        store = ApiKeyStore(pool)
        return {role: (await store.create(f"fault-{role}", role))[1] for role in ("admin", "writer", "ops")}
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def start_fault_platform(stack: Stack, logs: Path, **overrides: Any) -> AsyncIterator[FaultPlatform]:
    """API in process, relay and projector as supervised processes, all on ``stack``."""
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        flag_events_topic=f"fault.flag-events.{suffix}",
        metric_alerts_topic=f"fault.metric-alerts.{suffix}",
        redis_namespace="fs",
        projector_group=f"projector-{suffix}",
        log_json=False,
        log_level="warning",
        db_command_timeout_seconds=5.0,
        **overrides,
    )
    await apply_migrations(stack.database_url)
    await ensure_topics(stack.kafka_bootstrap, [flag_events_spec(settings.flag_events_topic)])
    keys = await _create_keys(stack.database_url)
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    env = _worker_env(stack, settings)
    for old in ("relay.log", "projector.log"):
        await asyncio.to_thread((logs / old).unlink, missing_ok=True)
    relay = WorkerProcess("workers.relay", env, logs / "relay.log")
    projector = WorkerProcess("workers.projector", env, logs / "projector.log")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash is a 500
        async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.fault") as client:
            platform = FaultPlatform(stack, settings, client, keys, relay, projector)
            relay.start()
            projector.start()
            supervisor = asyncio.create_task(platform.supervise(), name="supervisor")
            try:
                yield platform
            finally:
                platform.stop.set()
                await supervisor
                await asyncio.to_thread(relay.stop)
                await asyncio.to_thread(projector.stop)
