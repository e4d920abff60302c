"""The two scans of ``verify``: some partitions of the Kafka log, and a share of the Postgres table.

Each scan is self-contained (arguments and results are plain picklable values) so that
``verify_log(workers=N)`` can run them in N processes; with one worker they run in-process.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from core.envelope import ChainBreak
from events.audit.chain import ChainTracker, Step, parse_fields
from events.audit.divergence import Discrepancy, locate_divergence
from events.audit.stream import StreamSettings, read_batches

__all__ = ["Findings", "KafkaPart", "PostgresPart", "Tally", "scan_kafka", "scan_postgres"]

_MAX_PENDING_DUPLICATES = 100_000


class Tally(Protocol):
    def add(self, phase: str, count: int) -> None: ...


def _rank(found: Discrepancy) -> tuple[int, int, int, str, int]:
    """Kafka findings in (partition, offset) order first, then the others by (stream, version)."""
    if found.source == "kafka":
        return 0, found.partition or 0, found.offset or 0, "", 0
    return 1, 0, 0, found.flag_key, found.version


@dataclass(slots=True)
class Findings:
    count: int = 0
    first: Discrepancy | None = None

    def record(self, found: Discrepancy) -> None:
        self.count += 1
        if self.first is None or _rank(found) < _rank(self.first):
            self.first = found

    def merge(self, other: Findings) -> None:
        self.count += other.count - (1 if other.first is not None else 0)
        if other.first is not None:
            self.record(other.first)


@dataclass(slots=True)
class KafkaPart:
    findings: Findings = field(default_factory=Findings)
    last: dict[str, tuple[int, str]] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[str, int, str, int, int]] = field(default_factory=list)
    events: int = 0
    redeliveries: int = 0
    older_duplicates: int = 0


@dataclass(slots=True)
class PostgresPart:
    findings: Findings = field(default_factory=Findings)
    rows: int = 0
    seen: set[str] = field(default_factory=set)


def _from_break(source: str, breach: ChainBreak, partition: int | None = None,
                offset: int | None = None) -> Discrepancy:
    return Discrepancy(source, breach.flag_key, breach.version, breach.problem, breach.detail,
                       partition, offset)


async def scan_kafka(settings: StreamSettings, partitions: Collection[int] | None, tally: Tally) -> KafkaPart:
    """Every stream's chain in the given partitions (all when ``None``)."""
    part = KafkaPart()
    tracker = ChainTracker()
    async for batch in read_batches(settings, partitions=partitions):
        for record in batch:
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            fields = parse_fields(record.value)
            result = tracker.check(fields, record_key=key, raw=record.value)
            if result.breach is not None:
                part.findings.record(_from_break("kafka", result.breach, record.partition, record.offset))
            if fields is None:
                continue
            part.partition_of[fields["flag_key"]] = record.partition
            if result.step is Step.OLDER_DUPLICATE and len(part.pending) < _MAX_PENDING_DUPLICATES:
                part.pending.append((fields["flag_key"], fields["version"], fields["hash"],
                                     record.partition, record.offset))
        tally.add("kafka", len(batch))
    part.last, part.events = tracker.last, tracker.events
    part.redeliveries, part.older_duplicates = tracker.redeliveries, tracker.older_duplicates
    return part


@dataclass(slots=True)
class _PostgresScan:
    conn: asyncpg.Connection
    settings: StreamSettings
    last: dict[str, tuple[int, str]]
    partition_of: dict[str, int]
    part: PostgresPart = field(default_factory=PostgresPart)
    tracker: ChainTracker = field(default_factory=ChainTracker)
    versions: dict[str, int] = field(default_factory=dict)

    async def row(self, row: asyncpg.Record) -> None:
        flag_key, version = row["flag_key"], row["version"]
        self.part.seen.add(flag_key)
        self.versions[flag_key] = max(version, self.versions.get(flag_key, 0))
        self.part.rows += 1
        fields = parse_fields(row["body"])
        if fields is None or fields["flag_key"] != flag_key or fields["version"] != version \
                or fields["hash"] != row["hash"]:
            self.part.findings.record(Discrepancy("postgres", flag_key, version, "column_mismatch",
                                                  "columns (flag_key, version, hash) disagree with the body"))
        else:
            result = self.tracker.check(fields, raw=row["body"])
            if result.breach is not None:
                self.part.findings.record(_from_break("postgres", result.breach))
        await self._compare(flag_key, version, row["hash"])

    async def _compare(self, flag_key: str, version: int, pg_hash: str) -> None:
        """One row against the Kafka side's last ``(version, hash)`` of its stream.

        Both chains are verified, so equal hashes at Kafka's last version prove every earlier
        event equal (each hash commits to all before it).
        """
        kafka_last = self.last.get(flag_key)
        if kafka_last is None:
            if version == 1:
                self.part.findings.record(Discrepancy("compare", flag_key, 1, "missing_in_kafka",
                                                      "the stream is in Postgres and not on Kafka"))
            return
        kafka_version, kafka_hash = kafka_last
        if version == kafka_version and pg_hash != kafka_hash:
            self.part.findings.record(await locate_divergence(
                self.conn, self.settings, flag_key, kafka_version, self.partition_of.get(flag_key)))
        elif version == kafka_version + 1:
            self.part.findings.record(Discrepancy("compare", flag_key, version, "missing_in_kafka",
                                                  f"Postgres has version {version}, "
                                                  f"Kafka stops at {kafka_version}"))

    def close_stream(self, flag_key: str, pg_version: int) -> None:
        """At the end of one stream in Postgres: Kafka must not hold versions Postgres lacks."""
        kafka_last = self.last.get(flag_key)
        if kafka_last is not None and pg_version < kafka_last[0]:
            self.part.findings.record(Discrepancy("compare", flag_key, pg_version + 1, "missing_in_postgres",
                                                  f"Kafka has versions up to {kafka_last[0]}, "
                                                  f"Postgres stops at {pg_version}"))


async def scan_postgres(settings: StreamSettings, database_url: str, last: dict[str, tuple[int, str]],
                        partition_of: dict[str, int], share: int, shares: int, tally: Tally) -> PostgresPart:
    """The rows of share ``share`` of ``shares`` (streams split by hash), in append (``seq``) order.

    Append order is each stream's version order (version n+1 is appended after n committed), so
    the tracker checks streams interleaved, as on Kafka, without sorting the table.
    """
    conn = await asyncpg.connect(database_url)
    scan = _PostgresScan(conn, settings, last, partition_of)
    try:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            query = ("SELECT flag_key, version, hash, body FROM events "
                     "WHERE mod(hashtext(flag_key)::bigint + 2147483648, $1) = $2 ORDER BY seq")
            cursor = await conn.cursor(query, shares, share)
            while rows := await cursor.fetch(5_000):
                for row in rows:
                    await scan.row(row)
                tally.add("postgres", len(rows))
        for flag_key, version in scan.versions.items():
            scan.close_stream(flag_key, version)
    finally:
        await conn.close()
    return scan.part
