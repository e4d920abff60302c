"""``verify``: replay the whole log and prove nothing was altered, dropped or forked.

Pass 1 (Kafka, every partition, batched): each stream's hash chain and gapless versions, with
:class:`~events.audit.chain.ChainTracker` (only the last ``(version, hash)`` per stream is kept).
Exact redeliveries are tolerated and counted; a redelivery of an older version is confirmed
against Postgres in pass 2.

Pass 2 (Postgres ``events``, server-side cursors ordered by ``(flag_key, version)``): every row's
columns agree with its body, every body is intact and linked (same tracker), and each stream is
compared with the Kafka side. Because both chains are verified, equal hashes at Kafka's last
version prove every earlier event equal too, so memory stays flat. When they differ, that one
stream is re-read (its partition only) to name the first differing version, its Kafka
coordinates and the fields that differ.

``workers=N`` runs pass 1 over N groups of partitions and pass 2 over N hash shares of the
streams, each in its own process (streams never span partitions). The report names the FIRST
discrepancy deterministically: Kafka findings by (partition, offset), then the others by
(stream, version).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import TypeVar

import asyncpg
import structlog

from events.audit.divergence import Discrepancy
from events.audit.stream import StreamSettings, topic_partitions
from events.audit.verify_scan import Findings, KafkaPart, PostgresPart, scan_kafka, scan_postgres

__all__ = ["ProgressCallback", "VerifyReport", "verify_log"]

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[str, int], None]
T = TypeVar("T")


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


class _LocalTally:
    """Counts in-process and calls ``progress`` each time a multiple of ``every`` is crossed."""

    def __init__(self, progress: ProgressCallback | None, every: int) -> None:
        self._progress, self._every, self._counts = progress, every, {"kafka": 0, "postgres": 0}

    def add(self, phase: str, count: int) -> None:
        before = self._counts[phase]
        self._counts[phase] = after = before + count
        if self._progress is not None and after // self._every > before // self._every:
            self._progress(phase, after)


_shared: dict[str, Synchronized[int]] = {}


class _SharedTally:
    """In a worker process: adds to the counters shared with the parent."""

    def add(self, phase: str, count: int) -> None:
        counter = _shared[phase]
        with counter.get_lock():
            counter.value += count


def _init_worker(kafka: Synchronized[int], postgres: Synchronized[int]) -> None:
    _shared["kafka"], _shared["postgres"] = kafka, postgres


def _kafka_worker(settings: StreamSettings, partitions: list[int]) -> KafkaPart:
    return asyncio.run(scan_kafka(settings, partitions, _SharedTally()))


def _postgres_worker(settings: StreamSettings, database_url: str, last: dict[str, tuple[int, str]],
                     partition_of: dict[str, int], share: int, shares: int) -> PostgresPart:
    scan = scan_postgres(settings, database_url, last, partition_of, share, shares, _SharedTally())
    return asyncio.run(scan)


async def verify_log(
    settings: StreamSettings,
    *,
    database_url: str | None = None,
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
    workers: int = 1,
) -> VerifyReport:
    """Verify the Kafka log (and, with ``database_url``, its agreement with Postgres)."""
    started = time.perf_counter()
    if workers <= 1:
        tally = _LocalTally(progress, progress_every)
        kafka_parts = [await scan_kafka(settings, None, tally)]
        kafka = _merge_kafka(kafka_parts)
        pg_parts = [] if database_url is None else [
            await scan_postgres(settings, database_url, kafka.last, kafka.partition_of, 0, 1, tally)]
    else:
        kafka, pg_parts = await _run_in_processes(settings, database_url, progress, progress_every, workers)
    report = await _report(settings, database_url, kafka, pg_parts)
    report.elapsed_s = time.perf_counter() - started
    log.info("audit.verify.done", ok=report.ok, kafka_events=report.kafka_events,
             postgres_rows=report.postgres_rows, discrepancies=report.discrepancies,
             elapsed_s=round(report.elapsed_s, 3), workers=workers)
    if report.first is not None:
        first = report.first
        log.warning("audit.verify.discrepancy", source=first.source, flag_key=first.flag_key,
                    version=first.version, problem=first.problem, detail=first.detail,
                    partition=first.partition, offset=first.offset)
    return report


async def _run_in_processes(settings: StreamSettings, database_url: str | None,
                            progress: ProgressCallback | None, every: int,
                            workers: int) -> tuple[KafkaPart, list[PostgresPart]]:
    context = multiprocessing.get_context("spawn")
    counters = {"kafka": context.Value("q", 0), "postgres": context.Value("q", 0)}
    loop = asyncio.get_running_loop()
    partitions = await topic_partitions(settings)
    groups = [partitions[i::workers] for i in range(min(workers, max(len(partitions), 1)))]
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(counters["kafka"], counters["postgres"])) as pool:
        jobs = [loop.run_in_executor(pool, _kafka_worker, settings, group) for group in groups]
        kafka = _merge_kafka(await _watch(jobs, counters["kafka"], "kafka", progress, every))
        pg_parts: list[PostgresPart] = []
        if database_url is not None:
            jobs_pg = [loop.run_in_executor(pool, _postgres_worker, settings, database_url, kafka.last,
                                            kafka.partition_of, share, workers) for share in range(workers)]
            pg_parts = await _watch(jobs_pg, counters["postgres"], "postgres", progress, every)
    return kafka, pg_parts


async def _watch(jobs: Sequence[asyncio.Future[T]], counter: Synchronized[int], phase: str,
                    progress: ProgressCallback | None, every: int) -> list[T]:
    reported = 0
    while not all(job.done() for job in jobs):
        await asyncio.wait(jobs, timeout=0.5)
        value = counter.value
        if progress is not None and value // every > reported // every:
            progress(phase, value)
            reported = value
    return [job.result() for job in jobs]


def _merge_kafka(parts: Sequence[KafkaPart]) -> KafkaPart:
    merged = KafkaPart()
    for part in parts:
        merged.findings.merge(part.findings)
        for key, last in part.last.items():
            if key in merged.last:
                merged.findings.record(Discrepancy("kafka", key, last[0], "wrong_partition",
                                                   "one stream's events are in two partitions",
                                                   part.partition_of.get(key), None))
            merged.last[key] = last
        merged.partition_of.update(part.partition_of)
        merged.pending += part.pending
        merged.events += part.events
        merged.redeliveries += part.redeliveries
        merged.older_duplicates += part.older_duplicates
    return merged


async def _report(settings: StreamSettings, database_url: str | None, kafka: KafkaPart,
                  pg_parts: Sequence[PostgresPart]) -> VerifyReport:
    findings = Findings()
    findings.merge(kafka.findings)
    report = VerifyReport(kafka_events=kafka.events, streams=len(kafka.last), redeliveries=kafka.redeliveries,
                          older_duplicates=kafka.older_duplicates)
    if database_url is not None:
        report.compared_with_postgres = True
        seen: set[str] = set()
        for part in pg_parts:
            findings.merge(part.findings)
            report.postgres_rows += part.rows
            seen |= part.seen
        for flag_key, (version, _) in kafka.last.items():
            if flag_key not in seen:
                findings.record(Discrepancy("compare", flag_key, 1, "missing_in_postgres",
                                            f"stream has {version} event(s) on Kafka and none in Postgres"))
        await _confirm_duplicates(database_url, kafka, findings)
    report.discrepancies, report.first = findings.count, findings.first
    return report


async def _confirm_duplicates(database_url: str, kafka: KafkaPart, findings: Findings) -> None:
    if not kafka.pending:
        return
    conn = await asyncpg.connect(database_url)
    try:
        for flag_key, version, kafka_hash, partition, offset in kafka.pending:
            pg_hash = await conn.fetchval("SELECT hash FROM events WHERE flag_key = $1 AND version = $2",
                                          flag_key, version)
            if pg_hash != kafka_hash:
                findings.record(Discrepancy("compare", flag_key, version, "redelivery_differs",
                                            "a redelivered event differs from Postgres", partition, offset))
    finally:
        await conn.close()
