"""Naming a discrepancy precisely: where the Kafka and Postgres copies of one stream diverge."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from events.audit.stream import StreamSettings, read_batches

__all__ = ["Discrepancy", "describe_fields_difference", "locate_divergence"]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    source: str  # "kafka" | "postgres" | "compare"
    flag_key: str
    version: int
    problem: str
    detail: str
    partition: int | None = None
    offset: int | None = None

    def describe(self) -> str:
        where = f" (partition {self.partition}, offset {self.offset})" if self.offset is not None else ""
        return f"[{self.source}] {self.flag_key} v{self.version}: {self.problem}: {self.detail}{where}"


def describe_fields_difference(left: bytes | str, right: bytes | str) -> str:
    """Which top-level envelope fields differ between two bodies."""
    a, b = orjson.loads(left), orjson.loads(right)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return "fields differ: " + ", ".join(keys) if keys else "bodies differ only in spelling"


async def locate_divergence(conn: asyncpg.Connection, settings: StreamSettings, flag_key: str,
                            up_to_version: int, partition: int | None) -> Discrepancy:
    """Re-read one stream from Kafka (its partition only) and Postgres; name the first differing version."""
    kafka: dict[int, tuple[str, bytes, int, int]] = {}
    partitions = None if partition is None else [partition]
    async for batch in read_batches(settings, partitions=partitions):
        for record in batch:
            if record.key is None or record.key.decode("utf-8", "replace") != flag_key:
                continue
            fields = orjson.loads(record.value)
            coordinates = (fields["hash"], record.value, record.partition, record.offset)
            kafka.setdefault(fields["version"], coordinates)
    rows = await conn.fetch("SELECT version, hash, body FROM events WHERE flag_key = $1 AND version <= $2 "
                            "ORDER BY version", flag_key, up_to_version)
    for row in rows:
        version = row["version"]
        if version not in kafka:
            return Discrepancy("compare", flag_key, version, "missing_in_kafka",
                               f"Postgres has version {version}, Kafka does not")
        kafka_hash, body, part, offset = kafka[version]
        if kafka_hash != row["hash"]:
            return Discrepancy("compare", flag_key, version, "mismatch",
                               f"Kafka hash {kafka_hash[:12]}… vs Postgres {row['hash'][:12]}…; "
                               + describe_fields_difference(body, row["body"]), part, offset)
    return Discrepancy("compare", flag_key, up_to_version, "mismatch",
                       "last hashes differ but no single version could be named")
