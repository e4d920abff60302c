"""The local stack on real servers: each one answers a real request; stopping leaves no process."""

from __future__ import annotations

import asyncio

import asyncpg
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

from runtime.devstack import Stack
from runtime.processes import list_group_members


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

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(unique_topic, b"hello", key=b"k"), 10)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        unique_topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert message.value == b"hello"


def test_private_stack__stop__leaves_no_process(private_stack: Stack) -> None:
    pids = [s.pid for s in private_stack.managed]
    assert all(pid is not None for pid in pids)

    private_stack.stop()

    assert all(not list_group_members(pid) for pid in pids if pid is not None)
