"""Process plumbing for the local stack: free ports, process groups, bounded waits, log tails.

Nothing here knows about Kafka, Redis or Postgres; :mod:`runtime.servers` builds on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TypeVar

__all__ = [
    "StackError",
    "describe_log_tail",
    "find_free_port",
    "is_alive",
    "list_group_members",
    "read_command_line",
    "run_coroutine_sync",
    "signal_group",
    "stop_process_group",
    "wait_until",
]

T = TypeVar("T")

_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


class StackError(RuntimeError):
    """A local server could not be found, started, reached or stopped. The message says what to do."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free now and was not handed out before by this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _ports_lock:
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise StackError("no free TCP port found on " + host)


def is_port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_process_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (``R``, ``S``, ``Z``...), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` names a running process (a zombie counts as gone)."""
    state = read_process_state(pid)
    return state is not None and state not in ("Z", "X")


def read_command_line(pid: int) -> str:
    """The command line of ``pid`` joined by spaces, or ``""`` when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def list_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pgid and is_alive(pid):
                members.append(pid)
    return members


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to every process of group ``pgid``; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop_process_group(
    pgid: int,
    *,
    first_signal: int = signal.SIGTERM,
    leader_only: bool = False,
    grace_seconds: float = 10.0,
    reap: Callable[[], object] | None = None,
) -> None:
    """Stop group ``pgid``: ``first_signal``, wait up to ``grace_seconds``, then SIGKILL; verify it is gone.

    ``leader_only`` sends the first signal to the leader alone (PostgreSQL wants SIGINT on the
    postmaster only: it shuts its children down itself). ``reap`` is called while waiting so a
    parent that spawned the leader can collect it (otherwise it lingers as a zombie).
    """
    if leader_only:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pgid, first_signal)
    else:
        signal_group(pgid, first_signal)

    def _gone() -> bool:
        if reap is not None:
            reap()
        return not list_group_members(pgid)

    if _poll(_gone, grace_seconds):
        return
    signal_group(pgid, signal.SIGKILL)
    if not _poll(_gone, 5.0):
        raise StackError(f"processes of group {pgid} survived SIGKILL: {list_group_members(pgid)}")


def _poll(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_path: Path | None = None,
    still_running: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``condition`` until it holds; after ``timeout`` seconds raise :class:`StackError`.

    When ``still_running`` says the server died, fail at once. The error holds the tail of
    ``log_path`` so the reason is on screen.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if still_running is not None and not still_running():
            tail = describe_log_tail(log_path)
            raise StackError(f"{what}: the process exited before it was ready.\n{tail}")
        if time.monotonic() >= deadline:
            raise StackError(f"{what}: not ready after {timeout:.0f} s.\n{describe_log_tail(log_path)}")
        time.sleep(interval)


def describe_log_tail(log_path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a server log, framed for an error message."""
    if log_path is None:
        return "(no log file)"
    try:
        text = log_path.read_text(errors="replace")
    except OSError as e:
        return f"(log {log_path} unreadable: {e})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of {log_path} ---\n{tail}\n--- end of log ---"


def run_coroutine_sync(factory: Callable[[], Coroutine[object, object, T]], timeout: float) -> T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Works whether or not the caller already runs an event loop (sync fixtures, async tests, CLI).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, factory())
        return future.result(timeout=timeout)
