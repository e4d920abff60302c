"""The state file ``<data_dir>/stack.json``: the local stack seen from another process.

``flagstream dev up`` writes it (:func:`runtime.devstack.write_state`); ``dev status`` and
``dev down`` read it. A recorded pid is only trusted while its command line still holds the
recorded program (guards against recycled pids).
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.managed import ServerRecord, reap_left_running
from runtime.processes import StackError, is_alive, read_command_line, stop_process_group

__all__ = ["STATE_FILE_NAME", "ServerStatus", "read_status", "read_urls", "state_path", "stop_recorded"]

STATE_FILE_NAME = "stack.json"


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE_NAME


def _read_state(data_dir: Path) -> dict[str, object] | None:
    path = data_dir / STATE_FILE_NAME
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        hint = "remove it and check for stray servers"
        raise StackError(f"the state file {path} is unreadable ({e}); {hint}") from e
    return state


def _records(state: Mapping[str, object]) -> Iterator[ServerRecord]:
    servers = state.get("servers", [])
    assert isinstance(servers, list)
    yield from servers


@dataclass(frozen=True)
class ServerStatus:
    name: str
    url: str
    pid: int
    running: bool
    log: str


def _is_recorded_process(record: ServerRecord) -> bool:
    pid = int(record["pid"])
    return pid > 0 and is_alive(pid) and str(record["marker"]) in read_command_line(pid)


def read_status(data_dir: Path) -> list[ServerStatus] | None:
    """The recorded servers and whether each still runs; None when no stack is recorded there."""
    state = _read_state(data_dir.resolve())
    if state is None:
        return None
    return [
        ServerStatus(
            name=str(r["name"]),
            url=str(r["url"]),
            pid=int(r["pid"]),
            running=_is_recorded_process(r),
            log=str(r["log"]),
        )
        for r in _records(state)
    ]


def read_urls(data_dir: Path) -> dict[str, str] | None:
    """The recorded environment variables (``DATABASE_URL``...), or None when no stack is recorded."""
    state = _read_state(data_dir.resolve())
    if state is None:
        return None
    urls = state.get("urls", {})
    assert isinstance(urls, dict)
    return {str(k): str(v) for k, v in urls.items()}


def stop_recorded(data_dir: Path, grace_seconds: float = 15.0) -> list[str]:
    """Stop the servers recorded in ``data_dir`` (by another process); return the names stopped."""
    data_dir = data_dir.resolve()
    state = _read_state(data_dir)
    if state is None:
        return []
    stopped = []
    for record in _records(state):
        if not _is_recorded_process(record):
            continue
        leader_only = record["name"] == "postgres"
        # SIGINT ("fast shutdown") for the postmaster alone; SIGTERM to the whole group otherwise
        first = signal.SIGINT if leader_only else signal.SIGTERM
        stop_process_group(
            int(record["pid"]), first_signal=first, leader_only=leader_only, grace_seconds=grace_seconds
        )
        stopped.append(str(record["name"]))
    reap_left_running()
    scratch = state.get("scratch_dirs", [])
    assert isinstance(scratch, list)
    for folder in scratch:
        shutil.rmtree(str(folder), ignore_errors=True)
    (data_dir / STATE_FILE_NAME).unlink(missing_ok=True)
    return stopped
