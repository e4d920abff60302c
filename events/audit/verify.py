"""``verify``: replay the whole log and prove nothing was altered, dropped or forked.

Pass 1 (Kafka, every partition, batched): each stream's hash chain and gapless versions, with
:class:`~events.audit.chain.ChainTracker` (only the last ``(version, hash)`` per stream is kept).
Exact redeliveries are tolerated and counted.

Pass 2 (Postgres ``events``, server-side cursor ordered by ``(flag_key, version)``): every row's
columns agree with its body, every body is intact and linked (same tracker), and each row is
compared with the Kafka side. Because both chains are verified, equal hashes at the stream's last
version prove every earlier event equal too (each hash commits to all before it), so memory stays
flat. When the hashes differ, the one diverging stream is re-read (its partition only) to name
the first differing version, its Kafka coordinates and the fields that differ.

The report names the FIRST discrepancy (Kafka log order first, then Postgres order) precisely.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from core.envelope import ChainBreak
from events.audit.chain import ChainTracker, Step, parse_fields
from events.audit.divergence import Discrepancy, locate_divergence
from events.audit.stream import StreamSettings, read_batches

__all__ = ["Discrepancy", "ProgressCallback", "VerifyReport", "verify_log"]

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[str, int], None]
_MAX_PENDING_DUPLICATES = 100_000


@dataclass(slots=True)
class VerifyReport:
    kafka_events: int = 0
    streams: int = 0
    redeliveries: int = 0
    older_duplicates: int = 0
    postgres_rows: int = 0
    discrepancies: int = 0
    first: Discrepancy | None = None
    elapsed_s: float = 0.0
    compared_with_postgres: bool = False

    @property
    def ok(self) -> bool:
        return self.discrepancies == 0

    def record(self, found: Discrepancy) -> None:
        self.discrepancies += 1
        if self.first is None:
            self.first = found
            log.warning("audit.verify.discrepancy", source=found.source, flag_key=found.flag_key,
                        version=found.version, problem=found.problem, detail=found.detail,
                        partition=found.partition, offset=found.offset)


@dataclass(slots=True)
class _KafkaSide:
    tracker: ChainTracker = field(default_factory=ChainTracker)
    partition_of: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[str, int, str, int, int]] = field(default_factory=list)


async def verify_log(
    settings: StreamSettings,
    *,
    database_url: str | None = None,
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> VerifyReport:
    """Verify the Kafka log (and, with ``database_url``, its agreement with Postgres)."""
    started = time.perf_counter()
    report = VerifyReport()
    side = await _verify_kafka(settings, report, progress, progress_every)
    if database_url is not None:
        report.compared_with_postgres = True
        await _compare_postgres(settings, database_url, side, report, progress, progress_every)
    report.elapsed_s = time.perf_counter() - started
    log.info("audit.verify.done", ok=report.ok, kafka_events=report.kafka_events,
             postgres_rows=report.postgres_rows, discrepancies=report.discrepancies,
             elapsed_s=round(report.elapsed_s, 3))
    return report


def _from_break(source: str, breach: ChainBreak, partition: int | None = None,
                offset: int | None = None) -> Discrepancy:
    return Discrepancy(source, breach.flag_key, breach.version, breach.problem, breach.detail,
                       partition, offset)


async def _verify_kafka(settings: StreamSettings, report: VerifyReport,
                        progress: ProgressCallback | None, every: int) -> _KafkaSide:
    side = _KafkaSide()
    tracker = side.tracker
    async for batch in read_batches(settings):
        for record in batch:
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            fields = parse_fields(record.value)
            result = tracker.check(fields, record_key=key, raw=record.value)
            if result.breach is not None:
                report.record(_from_break("kafka", result.breach, record.partition, record.offset))
            if fields is None:
                continue
            side.partition_of[fields["flag_key"]] = record.partition
            if result.step is Step.OLDER_DUPLICATE and len(side.pending) < _MAX_PENDING_DUPLICATES:
                side.pending.append((fields["flag_key"], fields["version"], fields["hash"],
                                     record.partition, record.offset))
            if progress is not None and tracker.events % every == 0:
                progress("kafka", tracker.events)
    report.kafka_events = tracker.events
    report.streams = len(tracker.last)
    report.redeliveries = tracker.redeliveries
    report.older_duplicates = tracker.older_duplicates
    return side


async def _compare_postgres(settings: StreamSettings, database_url: str, side: _KafkaSide,
                            report: VerifyReport, progress: ProgressCallback | None, every: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        seen: set[str] = set()
        await _scan_postgres(conn, settings, side, report, seen, progress, every)
        for flag_key, (version, _) in sorted(side.tracker.last.items()):
            if flag_key not in seen:
                report.record(Discrepancy("compare", flag_key, 1, "missing_in_postgres",
                                          f"stream has {version} event(s) on Kafka and none in Postgres"))
        await _confirm_duplicates(conn, side, report)
    finally:
        await conn.close()


async def _scan_postgres(conn: asyncpg.Connection, settings: StreamSettings, side: _KafkaSide,
                         report: VerifyReport, seen: set[str],
                         progress: ProgressCallback | None, every: int) -> None:
    pg = ChainTracker()
    current: str | None = None
    last_row: tuple[str, int] | None = None
    async with conn.transaction(readonly=True):
        query = "SELECT flag_key, version, hash, body FROM events ORDER BY flag_key, version"
        async for row in conn.cursor(query, prefetch=10_000):
            flag_key, version = row["flag_key"], row["version"]
            if flag_key != current:
                if last_row is not None:
                    await _close_stream(side, report, *last_row)
                current = flag_key
                seen.add(flag_key)
            last_row = (flag_key, version)
            fields = parse_fields(row["body"])
            _check_row(pg, fields, row, report)
            await _compare_row(conn, settings, side, flag_key, version, row["hash"], report)
            report.postgres_rows += 1
            if progress is not None and report.postgres_rows % every == 0:
                progress("postgres", report.postgres_rows)
    if last_row is not None:
        await _close_stream(side, report, *last_row)


def _check_row(pg: ChainTracker, fields: dict[str, Any] | None, row: asyncpg.Record,
               report: VerifyReport) -> None:
    flag_key, version = row["flag_key"], row["version"]
    if fields is None or fields["flag_key"] != flag_key or fields["version"] != version \
            or fields["hash"] != row["hash"]:
        report.record(Discrepancy("postgres", flag_key, version, "column_mismatch",
                                  "columns (flag_key, version, hash) disagree with the body"))
        return
    result = pg.check(fields, raw=row["body"])
    if result.breach is not None:
        report.record(_from_break("postgres", result.breach))


async def _compare_row(conn: asyncpg.Connection, settings: StreamSettings, side: _KafkaSide,
                       flag_key: str, version: int, pg_hash: str, report: VerifyReport) -> None:
    """One Postgres row against the Kafka side's last ``(version, hash)`` of its stream."""
    kafka_last = side.tracker.last.get(flag_key)
    if kafka_last is None:
        return  # reported once per stream after the scan
    kafka_version, kafka_hash = kafka_last
    if version == kafka_version and pg_hash != kafka_hash:
        report.record(await locate_divergence(conn, settings, flag_key, kafka_version,
                                              side.partition_of.get(flag_key)))
    elif version == kafka_version + 1:
        report.record(Discrepancy("compare", flag_key, version, "missing_in_kafka",
                                  f"Postgres has version {version}, Kafka stops at {kafka_version}"))


async def _close_stream(side: _KafkaSide, report: VerifyReport, flag_key: str, pg_version: int) -> None:
    """At the end of one stream in Postgres: Kafka must not hold versions Postgres lacks."""
    kafka_last = side.tracker.last.get(flag_key)
    if kafka_last is not None and pg_version < kafka_last[0]:
        report.record(Discrepancy("compare", flag_key, pg_version + 1, "missing_in_postgres",
                                  f"Kafka has versions up to {kafka_last[0]}, "
                                  f"Postgres stops at {pg_version}"))


async def _confirm_duplicates(conn: asyncpg.Connection, side: _KafkaSide, report: VerifyReport) -> None:
    for flag_key, version, kafka_hash, partition, offset in side.pending:
        pg_hash = await conn.fetchval("SELECT hash FROM events WHERE flag_key = $1 AND version = $2",
                                      flag_key, version)
        if pg_hash != kafka_hash:
            report.record(Discrepancy("compare", flag_key, version, "redelivery_differs",
                                      "a redelivered event differs from Postgres", partition, offset))

