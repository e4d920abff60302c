"""Export the audit log for a SIEM (JSON Lines or CSV), and re-verify an export file.

Every exported event carries its ``hash`` and ``prev_hash`` and its canonical body, so an
importer can recompute each hash and re-link each stream:

- ``jsonl``: one line per event, the event's canonical JSON exactly as Kafka carries it;
- ``csv``: a header, then ``event_id, flag_key, version, type, environment, occurred_at, actor,
  reason, correlation_id, causation_id, prev_hash, hash, body`` (``body`` = the canonical JSON).

Events are written in log order (per-partition order, so each stream in version order);
``since``/``until`` select by ``occurred_at``. Because a stream's events are in time order, the
selection of one stream is a contiguous run of versions: :func:`verify_export` accepts a stream
that starts above version 1 (its first event is the anchor) and checks everything after it.
Exact redeliveries are written once.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from core.envelope import ChainBreak
from events.audit.chain import ChainTracker, Step, parse_fields
from events.audit.stream import StreamSettings, read_batches

__all__ = ["CSV_COLUMNS", "EventWriter", "ExportFormat", "ExportReport", "export_log", "verify_export"]

ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = ("event_id", "flag_key", "version", "type", "environment", "occurred_at", "actor", "reason",
               "correlation_id", "causation_id", "prev_hash", "hash", "body")


@dataclass(slots=True)
class ExportReport:
    events: int = 0
    skipped_redeliveries: int = 0
    first_break: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _instant(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


async def export_log(
    settings: StreamSettings,
    out: TextIO,
    *,
    fmt: ExportFormat = "jsonl",
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExportReport:
    """Stream the events with ``since <= occurred_at <= until`` to ``out``."""
    report = ExportReport()
    seen = ChainTracker(partial_start=True)
    writer = EventWriter(out, fmt)
    async for batch in read_batches(settings, since=since):
        for record in batch:
            fields = parse_fields(record.value)
            if fields is None:
                continue
            occurred = _instant(fields["occurred_at"])
            if (since is not None and occurred < since) or (until is not None and occurred > until):
                continue
            result = seen.check(fields, raw=record.value)
            if result.step is Step.REDELIVERY or result.step is Step.OLDER_DUPLICATE:
                report.skipped_redeliveries += 1
                continue
            if result.breach is not None and report.first_break is None:
                report.first_break = result.breach
            writer.write(fields, record.value.decode("utf-8"))
            report.events += 1
    return report


class EventWriter:
    """Writes events in one export format (the CSV header first)."""

    def __init__(self, out: TextIO, fmt: ExportFormat) -> None:
        self._out = out
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def write(self, fields: dict[str, Any], body: str) -> None:
        if self._csv is None:
            self._out.write(body + "\n")
        else:
            self._csv.writerow([_cell(fields.get(c)) for c in CSV_COLUMNS[:-1]] + [body])


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _bodies(path: Path, fmt: ExportFormat) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.rstrip("\n")
            return
        for number, row in enumerate(csv.DictReader(handle), start=2):
            yield number, row["body"]


def _detect_format(path: Path) -> ExportFormat:
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    return "csv" if first.startswith(CSV_COLUMNS[0] + ",") else "jsonl"


def verify_export(path: Path, *, fmt: ExportFormat | None = None) -> ExportReport:
    """Re-verify an export file: every hash recomputed, every stream linked and gapless."""
    chosen = fmt or _detect_format(path)
    tracker = ChainTracker(partial_start=True)
    report = ExportReport()
    for _, body in _bodies(path, chosen):
        result = tracker.check(parse_fields(body), raw=body)
        report.events += 1
        if result.step is Step.REDELIVERY:
            report.skipped_redeliveries += 1
        if result.breach is not None and report.first_break is None:
            report.first_break = result.breach
    return report
