"""EnvironmentReader on a real Redis: load, notices, polling fallback, outage and recovery."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from redis.asyncio import Redis

from core.model import EnvironmentConfig, Segment
from projections.connection import make_redis
from projections.documents import encode_env_doc
from projections.reader import EnvironmentReader
from projections.readmodel import RedisReadModel
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config

pytestmark = pytest.mark.integration
NOW = datetime(2026, 6, 1, tzinfo=UTC)
StartReader = Callable[[str], Awaitable[EnvironmentReader]]
USER = {"targetingKey": "user-1", "country": "FR"}


async def _eventually(condition: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


@pytest.fixture
async def reader_factory(fresh_redis: str) -> AsyncIterator[StartReader]:
    started: list[EnvironmentReader] = []

    async def start(environment: str) -> EnvironmentReader:
        reader = EnvironmentReader(fresh_redis, environment, poll_interval=0.2)
        await reader.start()
        started.append(reader)
        return reader

    yield start
    for reader in started:
        await reader.stop()


async def test_reader__start__loads_and_compiles_every_flag(
    client: Redis, reader_factory: StartReader
) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    await model.apply(writer.create(flag_doc("a", "production")))
    await model.apply(writer.create(flag_doc("b", "production", "staging")))
    await model.apply(writer.configure("b", "production", on_config(True)))

    reader = await reader_factory("production")

    assert (reader.version_of("a"), reader.version_of("b")) == (1, 2)
    assert reader.evaluate("a", USER, NOW).value is False
    assert reader.evaluate("b", USER, NOW).value is True
    assert set(reader.evaluate_all(USER, NOW)) == {"a", "b"}
    assert reader.healthy


async def test_reader__change_notice__applies_new_version(client: Redis, reader_factory: StartReader) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    await model.apply(writer.create(flag_doc("a", "production")))
    reader = await reader_factory("production")

    await model.apply(writer.configure("a", "production", on_config(True)))

    assert await reader.wait_for_version("a", 2, within=5.0)
    assert reader.evaluate("a", USER, NOW).value is True
    assert reader.revision == 2


async def test_reader__wait_for_version__false_when_never_projected(reader_factory: StartReader) -> None:
    reader = await reader_factory("production")

    assert await reader.wait_for_version("missing", 1, within=0.3) is False


async def test_reader__notice_missed__polling_revision_catches_up(
    client: Redis, reader_factory: StartReader
) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    await model.apply(writer.create(flag_doc("a", "production")))
    reader = await reader_factory("production")
    enabled = flag_doc("a", "production").model_copy(update={"environments": {"production": on_config(True)}})

    await client.hset("fs:env:production:flags", "a", encode_env_doc(enabled, "production", 7))
    await client.incr("fs:env:production:rev")  # no PUBLISH: the notice is "lost"

    assert await reader.wait_for_version("a", 7, within=5.0)
    assert reader.evaluate("a", USER, NOW).value is True


async def test_reader__segment_changes__recompiles_rules_using_it(
    client: Redis, reader_factory: StartReader
) -> None:
    model, writer = RedisReadModel(client), StreamWriter()
    rule = {
        "id": "beta",
        "when": {"attribute": "targetingKey", "op": "in_segment", "values": ["testers"]},
        "serve": {"variation": "on"},
    }
    config = EnvironmentConfig.model_validate(
        {"enabled": True, "rules": [rule], "default": {"variation": "off"}}
    )
    await model.apply(writer.create_segment(Segment(key="testers", included=("user-2",))))
    await model.apply(writer.create(flag_doc("a", "production")))
    await model.apply(writer.configure("a", "production", config))
    reader = await reader_factory("production")
    assert reader.evaluate("a", USER, NOW).value is False

    await model.apply(writer.update_segment(Segment(key="testers", included=("user-1",))))

    await _eventually(lambda: reader.evaluate("a", USER, NOW).value is True)


# --- outage: a dedicated redis-server this test can stop and start -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _RedisServer:
    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self._log = (self.folder / "redis.log").open("ab")  # closed by stop(): the server writes to it
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError((self.folder / "redis.log").read_text()) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[_RedisServer]:
    server = _RedisServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_reader__redis_down__serves_snapshot_reports_staleness_then_recovers(
    own_redis: _RedisServer,
) -> None:
    writer = StreamWriter()
    events = [
        writer.create(flag_doc("a", "production")),
        writer.configure("a", "production", on_config(True)),
    ]
    client = make_redis(own_redis.url)
    await RedisReadModel(client).apply(events[0])
    await RedisReadModel(client).apply(events[1])
    await client.aclose()
    reader = EnvironmentReader(own_redis.url, "production", poll_interval=0.2, max_backoff=0.2)
    await reader.start()
    try:
        own_redis.stop()
        await _eventually(lambda: not reader.healthy)
        await _eventually(lambda: reader.staleness_seconds > 0.5)
        assert reader.evaluate("a", USER, NOW).value is True  # the last snapshot, still served
        assert reader.version_of("a") == 2

        own_redis.start()  # empty: nothing persisted; the projector would rebuild it
        client = make_redis(own_redis.url)
        for event in [*events, writer.configure("a", "production", on_config(False))]:
            await RedisReadModel(client).apply(event)
        await client.aclose()

        assert await reader.wait_for_version("a", 3, within=10.0)
        await _eventually(lambda: reader.healthy and reader.staleness_seconds < 1.0)
        assert reader.evaluate("a", USER, NOW).value is False
    finally:
        await reader.stop()
