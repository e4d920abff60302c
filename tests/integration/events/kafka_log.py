"""Reading a topic back in full, for checks. Never trusts end offsets (tansu reports them wrong
after multi-record batches): it consumes until every expected record was seen, with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

from aiokafka import ConsumerRecord

from events.kafka.adapter import make_consumer


@dataclass(frozen=True, slots=True)
class LogRecord:
    key: str
    version: int
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int


async def read_topic(
    bootstrap: str, topic: str, expected: Collection[tuple[str, int]], *, within: float = 60.0
) -> list[LogRecord]:
    """Every record of ``topic`` from the start, in per-partition order, until ``expected`` seen."""
    consumer = make_consumer(bootstrap, topic, isolation_level="read_uncommitted")
    await consumer.start()
    records: list[LogRecord] = []
    missing = set(expected)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while missing and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for batch in batches.values():
                for raw in batch:
                    record = _to_record(raw)
                    records.append(record)
                    missing.discard((record.key, record.version))
    finally:
        await consumer.stop()
    if missing:
        raise AssertionError(f"{len(missing)} records never arrived, e.g. {sorted(missing)[:5]}")
    return records


def _to_record(raw: ConsumerRecord[bytes, bytes]) -> LogRecord:
    headers = {k: v for k, v in raw.headers}
    assert raw.key is not None and raw.value is not None
    version = int(headers["fs_version"])
    return LogRecord(raw.key.decode(), version, raw.value, headers, raw.partition, raw.offset)
