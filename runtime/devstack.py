"""The local stack: tansu (Kafka), redis-server and PostgreSQL 15, on free ports under one data folder.

In-process use (tests, ``flagstream run``)::

    with Stack.start(Path(".runtime-data"), durable=False) as stack:
        stack.database_url, stack.redis_url, stack.kafka_bootstrap
        stack.kafka.kill(); stack.kafka.start()      # a crash, then a restart on the same port

Any server can come from outside instead (``database_url=`` / ``redis_url=`` / ``kafka_bootstrap=``,
usually from ``DATABASE_URL`` / ``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``): it is then not started,
and its attribute (``stack.postgres`` ...) is None.

Across processes (``flagstream dev up|status|down``): :func:`write_state` records pids and ports in
``<data_dir>/stack.json``; :func:`read_status` and :func:`stop_recorded` work from that file alone.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from runtime.managed import ManagedServer
from runtime.processes import StackError, find_free_port
from runtime.servers import KafkaServer, PostgresServer, RedisServer, require_postgres_os_user
from runtime.settings import Settings
from runtime.statefile import STATE_FILE_NAME, ServerStatus, read_status, read_urls, state_path, stop_recorded

__all__ = [
    "STATE_FILE_NAME",
    "ServerStatus",
    "Stack",
    "StackError",
    "open_stack",
    "read_status",
    "read_urls",
    "stop_recorded",
    "write_state",
]

log = structlog.get_logger(__name__)

_START_ATTEMPTS = 3  # a free port can be taken by someone else between the check and the bind


@dataclass
class Stack:
    """Three servers, each either managed here (started, stoppable) or external (a URL only)."""

    data_dir: Path
    database_url: str
    redis_url: str
    kafka_bootstrap: str
    kafka: KafkaServer | None = None
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    _scratch_dirs: list[Path] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        durable: bool = True,
        database_url: str | None = None,
        redis_url: str | None = None,
        kafka_bootstrap: str | None = None,
        ready_timeout: float = 30.0,
        stop_at_exit: bool = False,
    ) -> Stack:
        """Start every server not given by URL, in parallel; on any failure stop the others and raise.

        ``durable=False`` turns PostgreSQL's fsync off (throw-away test instances only).
        ``stop_at_exit=True`` also stops the servers when this interpreter exits without calling
        :meth:`stop` (an interrupted test session); ``flagstream dev up`` leaves it off on purpose.
        """
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        scratch: list[Path] = []
        servers: dict[str, ManagedServer] = {}
        if kafka_bootstrap is None:
            servers["kafka"] = KafkaServer(data_dir / "kafka", find_free_port(), ready_timeout=ready_timeout)
        if redis_url is None:
            servers["redis"] = RedisServer(data_dir / "redis", find_free_port(), ready_timeout=ready_timeout)
        if database_url is None:
            pg_folder = _choose_postgres_folder(data_dir / "postgres", scratch)
            servers["postgres"] = PostgresServer(
                pg_folder, find_free_port(), durable=durable, ready_timeout=ready_timeout
            )
        _start_all(servers)
        kafka, redis_server, postgres = servers.get("kafka"), servers.get("redis"), servers.get("postgres")
        assert kafka is None or isinstance(kafka, KafkaServer)
        assert redis_server is None or isinstance(redis_server, RedisServer)
        assert postgres is None or isinstance(postgres, PostgresServer)
        stack = cls(
            data_dir=data_dir,
            database_url=database_url or (postgres.url if postgres else ""),
            redis_url=redis_url or (redis_server.url if redis_server else ""),
            kafka_bootstrap=kafka_bootstrap or (kafka.url if kafka else ""),
            kafka=kafka,
            redis=redis_server,
            postgres=postgres,
            _scratch_dirs=scratch,
        )
        if stop_at_exit:
            atexit.register(stack._stop_quietly)
        return stack

    @property
    def managed(self) -> list[ManagedServer]:
        """The servers this stack started (external ones excluded)."""
        return [s for s in (self.kafka, self.redis, self.postgres) if s is not None]

    def stop(self) -> None:
        """Stop every managed server (in parallel) and verify none of their processes is left."""
        atexit.unregister(self._stop_quietly)
        errors = _run_parallel({s.name: s.stop for s in self.managed})
        for folder in self._scratch_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        if errors:
            raise StackError("could not stop: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))

    def detach(self) -> None:
        """Leave every managed server running when this process ends (``flagstream dev up``); stop
        them later from their recorded pids (``flagstream dev down``)."""
        atexit.unregister(self._stop_quietly)
        for server in self.managed:
            server.detach()

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except StackError as e:
            log.error("devstack.stop_at_exit_failed", error=str(e))

    def environment(self) -> dict[str, str]:
        """The three URLs as the environment variables every Flagstream process reads."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
        }

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _run_parallel(tasks: Mapping[str, Callable[[], object]]) -> dict[str, BaseException]:
    errors: dict[str, BaseException] = {}
    if not tasks:
        return errors
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        for name, future in futures.items():
            exc = future.exception()
            if exc is not None:
                errors[name] = exc
    return errors


def _start_with_retries(server: ManagedServer) -> None:
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            server.start()
            return
        except StackError:
            if attempt == _START_ATTEMPTS or "in use" not in server.describe_log_tail(10).lower():
                raise
            server.port = find_free_port()
            log.warning("devstack.port_taken_retrying", server=server.name, port=server.port)


def _start_all(servers: Mapping[str, ManagedServer]) -> None:
    errors = _run_parallel({name: functools.partial(_start_with_retries, s) for name, s in servers.items()})
    if not errors:
        return
    for server in servers.values():
        try:
            server.stop(grace_seconds=5.0)
        except StackError as e:
            log.error("devstack.cleanup_failed", server=server.name, error=str(e))
    raise StackError("the local stack did not start:\n" + "\n".join(f"[{k}] {v}" for k, v in errors.items()))


def _postgres_can_reach(folder: Path) -> bool:
    """Whether the ``postgres`` OS user can reach ``folder`` (only asked as root, who then chowns it)."""
    probe = subprocess.run(
        ["test", "-x", str(folder.parent)],
        user="postgres",
        check=False,
        timeout=10,
    )
    return probe.returncode == 0


def _choose_postgres_folder(folder: Path, scratch: list[Path]) -> Path:
    """Where PostgreSQL keeps its files: ``folder``, unless root runs us and ``postgres`` cannot reach it.

    Then (e.g. under pytest's private temp dirs) a scratch folder under the system temp dir is used,
    owned by ``postgres`` and removed when the stack stops.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        require_postgres_os_user()
    if os.geteuid() != 0 or _postgres_can_reach(folder):
        (folder / "LOCATION").unlink(missing_ok=True)
        return folder
    scratch_dir = Path(tempfile.mkdtemp(prefix="flagstream-pg-"))
    shutil.chown(scratch_dir, "postgres", "postgres")
    scratch.append(scratch_dir)
    (folder / "LOCATION").write_text(f"PostgreSQL files live in {scratch_dir} (postgres cannot reach here)\n")
    return scratch_dir


def open_stack(settings: Settings, *, durable: bool = True, stop_at_exit: bool = True) -> Stack:
    """The stack a long-running command (``flagstream run``) should use.

    Servers set in ``settings`` (``DATABASE_URL``...) are used as they are. If ``flagstream dev up``
    already runs a stack in ``settings.data_dir``, its servers are used (and left running when this
    stack stops). Otherwise the missing servers are started here and stopped by :meth:`Stack.stop`.
    """
    data_dir = Path(settings.data_dir)
    statuses = read_status(data_dir)
    recorded = read_urls(data_dir) if statuses and all(s.running for s in statuses) else None
    recorded = recorded or {}
    return Stack.start(
        data_dir,
        durable=durable,
        database_url=settings.database_url or recorded.get("DATABASE_URL"),
        redis_url=settings.redis_url or recorded.get("REDIS_URL"),
        kafka_bootstrap=settings.kafka_bootstrap_servers or recorded.get("KAFKA_BOOTSTRAP_SERVERS"),
        stop_at_exit=stop_at_exit,
    )


# -- the state file: the stack across processes --------------------------------------------------


def write_state(stack: Stack) -> Path:
    """Record the stack's servers in ``<data_dir>/stack.json`` for ``dev status`` / ``dev down``."""
    state = {
        "urls": stack.environment(),
        "servers": [s.record() for s in stack.managed],
        "scratch_dirs": [str(p) for p in stack._scratch_dirs],
    }
    path = state_path(stack.data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
    return path
