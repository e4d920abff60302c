"""Process plumbing of the local stack, on plain `sleep` processes (no server is started here)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.devstack import STATE_FILE_NAME, read_status, stop_recorded
from runtime.processes import (
    StackError,
    describe_log_tail,
    find_free_port,
    is_alive,
    list_group_members,
    signal_group,
    stop_process_group,
    wait_until,
)


@pytest.fixture
def group_ignoring_sigterm() -> Iterator[subprocess.Popen[bytes]]:
    """A process group of a shell and a child, both ignoring SIGTERM."""
    process = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True)
    try:
        wait_until(lambda: len(list_group_members(process.pid)) == 2, timeout=10, what="the group to form")
        yield process
    finally:  # whatever the test did: the group killed and the shell reaped (a Popen never left running)
        signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_find_free_port__called_repeatedly__distinct_bindable_ports() -> None:
    ports = [find_free_port() for _ in range(20)]

    assert len(set(ports)) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))


def test_wait_until__condition_never_holds__error_names_what_and_holds_log_tail(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    log_path.write_text("".join(f"line {i}\n" for i in range(100)))

    with pytest.raises(StackError) as caught:
        wait_until(lambda: False, timeout=0.2, what="the thing", log_path=log_path)

    message = str(caught.value)
    assert message.startswith("the thing: not ready after")
    assert "line 99" in message and "line 59" not in message  # the last 40 lines only


def test_wait_until__process_died__fails_before_the_timeout() -> None:
    started = time.monotonic()

    with pytest.raises(StackError, match="exited before it was ready"):
        wait_until(lambda: False, timeout=30, what="x", still_running=lambda: False)

    assert time.monotonic() - started < 5


def test_describe_log_tail__missing_file__says_so(tmp_path: Path) -> None:
    assert "unreadable" in describe_log_tail(tmp_path / "absent.log")


def test_stop_process_group__members_ignore_sigterm__killed_after_grace(
    group_ignoring_sigterm: subprocess.Popen[bytes],
) -> None:
    pgid = group_ignoring_sigterm.pid

    stop_process_group(pgid, grace_seconds=0.3, reap=group_ignoring_sigterm.poll)

    assert list_group_members(pgid) == []
    assert not is_alive(pgid)


def test_stop_recorded__pid_runs_another_program__left_alone(
    tmp_path: Path, group_ignoring_sigterm: subprocess.Popen[bytes]
) -> None:
    record = {
        "name": "redis",
        "pid": group_ignoring_sigterm.pid,
        "port": 1,
        "url": "redis://x:1/0",
        "log": "x.log",
        "folder": str(tmp_path),
        "marker": "redis-server",
    }
    (tmp_path / STATE_FILE_NAME).write_text(json.dumps({"urls": {}, "servers": [record]}))

    statuses = read_status(tmp_path)
    stopped = stop_recorded(tmp_path)

    assert statuses is not None and statuses[0].running is False  # a recycled pid is not our server
    assert stopped == []
    assert is_alive(group_ignoring_sigterm.pid)
    assert not (tmp_path / STATE_FILE_NAME).exists()


def test_read_status__nothing_recorded__none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None


def test_read_status__corrupt_state_file__error_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE_NAME).write_text("{not json")

    with pytest.raises(StackError, match="remove it"):
        read_status(tmp_path)
