"""Shared test fixtures: real Kafka (tansu), Redis and PostgreSQL for the whole session.

Servers come from ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` / ``DATABASE_URL`` when those are set;
otherwise throw-away servers are started on free ports under a pytest temp folder (see
``docs/local-stack.md``). Everything is lazy: a test that requests none of these fixtures (all of
``tests/unit``) starts nothing.

Session scope: ``stack``, ``database_url``, ``redis_url``, ``kafka_bootstrap``.
Function scope:
- ``fresh_database``: URL of a new, empty database ``test_<hex>`` on the session server, dropped after;
- ``fresh_redis``: URL of a logical Redis DB (1..15, round robin) FLUSHed before and after the test.
  Pub/sub channels are server-wide, not per DB: tests must not run in parallel on one server;
- ``unique_topic``: a new Kafka topic name (not created: the code under test creates it);
- ``managed_stack``: the session stack, skipping the test unless all three servers are managed here;
- ``private_stack``: a fresh stack for this test alone (for tests that kill or restart servers
  without disturbing the others).
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
import redis

from runtime.devstack import Stack, StackError
from runtime.processes import run_coroutine_sync

_ENV_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
_FRESH_REDIS_DBS = itertools.cycle(range(1, 16))  # 16 DBs is the default of any redis-server


def _from_env(name: str) -> str | None:
    return os.environ.get(name) or None


def pytest_report_header(config: pytest.Config) -> str:
    sources = [f"{name}={'env' if _from_env(name) else 'local throw-away server'}" for name in _ENV_VARS]
    return "flagstream servers: " + ", ".join(sources)


_session_stacks: list[Stack] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log tail of any session server that is no longer running."""
    report: pytest.TestReport = yield
    if report.failed:
        for server in (s for started in _session_stacks for s in started.managed):
            if not server.is_running():
                report.sections.append((f"{server.name} is down: its log", server.describe_log_tail()))
    return report


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack | None]:
    """The session's local stack, or None when all three servers come from the environment."""
    external = {name: _from_env(name) for name in _ENV_VARS}
    if all(external.values()):
        yield None
        return
    try:
        started = Stack.start(
            tmp_path_factory.mktemp("devstack"),
            durable=False,
            database_url=external["DATABASE_URL"],
            redis_url=external["REDIS_URL"],
            kafka_bootstrap=external["KAFKA_BOOTSTRAP_SERVERS"],
            stop_at_exit=True,
        )
    except StackError as e:  # the message holds the tail of the failing server's log
        pytest.fail(f"could not start the test servers:\n{e}", pytrace=False)
    _session_stacks.append(started)
    try:
        yield started
    finally:
        _session_stacks.remove(started)
        started.stop()


@pytest.fixture(scope="session")
def database_url(stack: Stack | None) -> str:
    return stack.database_url if stack is not None else os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_url(stack: Stack | None) -> str:
    return stack.redis_url if stack is not None else os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack | None) -> str:
    return stack.kafka_bootstrap if stack is not None else os.environ["KAFKA_BOOTSTRAP_SERVERS"]


def _replace_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


async def _execute_admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement, timeout=30)
    finally:
        await conn.close(timeout=10)


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """URL of a new, empty database on the session server; dropped (connections forced out) after."""
    name = f"test_{uuid.uuid4().hex}"
    run_coroutine_sync(lambda: _execute_admin(database_url, f'CREATE DATABASE "{name}"'), timeout=60)
    try:
        yield _replace_path(database_url, "/" + name)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        run_coroutine_sync(lambda: _execute_admin(database_url, drop), timeout=60)


def _flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def fresh_redis(redis_url: str) -> Iterator[str]:
    """URL of a logical Redis DB (1..15), empty at the start of the test and flushed after it."""
    url = _replace_path(redis_url, f"/{next(_FRESH_REDIS_DBS)}")
    _flush_redis(url)
    try:
        yield url
    finally:
        _flush_redis(url)


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A Kafka topic name no other test uses (the test, or the code under test, creates it)."""
    label = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:60].strip("-")
    return f"test.{label}.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def managed_stack(stack: Stack | None) -> Stack:
    """The session stack when all three servers are managed here (so a test may kill and restart them)."""
    if stack is None or len(stack.managed) != 3:
        pytest.skip("needs the local stack (unset DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS)")
    return stack


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[Stack]:
    """A whole stack for one test only: kill, restart and lose data without disturbing other tests."""
    try:
        own = Stack.start(tmp_path / "devstack", durable=False, stop_at_exit=True)
    except StackError as e:
        if any(_from_env(name) for name in _ENV_VARS):
            pytest.skip(f"no local servers available (external ones are configured): {e}")
        pytest.fail(f"could not start a private stack:\n{e}", pytrace=False)
    try:
        yield own
    finally:
        own.stop()
