"""The life cycle shared by every local server: start on a port, wait until ready, kill, stop.

A :class:`ManagedServer` owns one port, one folder and one log file. It can be started,
killed (SIGKILL, as a crash) and started again on the same port, or stopped gracefully.
Every server runs in its own process group, so stopping it leaves no stray child behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import structlog

from runtime.processes import StackError, describe_log_tail, is_alive, stop_process_group, wait_until

__all__ = ["ManagedServer", "ServerRecord", "left_running", "reap_left_running"]

log = structlog.get_logger(__name__)

ServerRecord = dict[str, str | int]

# Handles of servers this process started and left running on purpose (``flagstream dev up``), kept
# for as long as the process lives: a Popen finalised while its child runs warns "subprocess is still
# running" (an unraisable error under the test suite's settings). The server is found by pid after.
_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []


def left_running() -> tuple[int, ...]:
    """The pids of the servers this process started and left running (``dev up``), not yet reaped."""
    return tuple(process.pid for process in _LEFT_RUNNING)


def reap_left_running() -> None:
    """Collect the exit status of the servers this process left running that have since ended (a
    ``dev down`` in the process that ran ``dev up``: tests, or a script doing both)."""
    _LEFT_RUNNING[:] = [process for process in _LEFT_RUNNING if process.poll() is None]


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

    def detach(self) -> None:
        """Leave the server running past this process (its pid is recorded by the caller): from now on
        it is handled by pid, as a server another process started."""
        if self._process is not None:
            _LEFT_RUNNING.append(self._process)
            self.adopt(self._process.pid)

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
