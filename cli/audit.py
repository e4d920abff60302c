"""``flagstream audit history | as-of | verify | export``: answers from the Kafka log itself.

Results go to stdout (JSON Lines, or the export itself); progress and errors go to stderr.
``verify`` exits 1 on any discrepancy, 2 when the servers cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from events.audit import (
    AuditFilters,
    AuditLogUnavailable,
    KafkaAuditLog,
    StreamSettings,
    environment_as_of,
    export_log,
    flag_as_of,
    verify_log,
)
from events.audit.export import ExportFormat
from runtime.devstack import read_urls
from runtime.settings import SettingsError, load_settings

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Replay the audit log: history, as-of, verify, export.")

InstantOption = Annotated[
    str | None, typer.Option(help="An ISO-8601 instant with a zone, e.g. 2026-11-01T12:00:00Z.")
]
EnvironmentOption = Annotated[str | None, typer.Option(help="Only this environment (and flag-level events).")]
WorkersOption = Annotated[
    int, typer.Option(min=0, max=64, help="Processes reading partition groups (0 = one per core, at most 4).")
]


def _workers(requested: int) -> int:
    return requested or max(1, min(os.cpu_count() or 1, 4))


PostgresOption = Annotated[bool, typer.Option("--postgres/--no-postgres", help="Also compare with Postgres.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _instant(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as e:
        raise _fail(f"not an ISO-8601 instant: {raw!r}") from e
    if value.tzinfo is None:
        raise _fail(f"the instant {raw!r} needs a zone (Z or +hh:mm)")
    return value


def _servers() -> tuple[StreamSettings, str | None]:
    """The topic to read and the Postgres URL: settings first, then the recorded local stack."""
    try:
        settings = load_settings()
    except SettingsError as e:
        raise _fail(str(e)) from e
    recorded = read_urls(Path(settings.data_dir)) or {}
    bootstrap = settings.kafka_bootstrap_servers or recorded.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap is None:
        raise _fail("no Kafka: set KAFKA_BOOTSTRAP_SERVERS or start the local stack (flagstream dev up)")
    database = settings.database_url or recorded.get("DATABASE_URL")
    return StreamSettings(bootstrap, settings.flag_events_topic), database


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


@app.command()
def history(
    flag: str,
    environment: EnvironmentOption = None,
    actor: Annotated[str | None, typer.Option(help="Only events by this actor.")] = None,
    event_type: Annotated[list[str] | None, typer.Option("--type", help="Only these event types.")] = None,
    since: InstantOption = None,
    until: InstantOption = None,
    after_version: Annotated[int | None, typer.Option(help="Cursor: start after this version.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """The history of one flag, one JSON line per event, with its field-level diff."""
    stream, _ = _servers()
    filters = AuditFilters(
        environment=environment,
        actor=actor,
        types=frozenset(event_type or ()),
        since=_instant(since),
        until=_instant(until),
    )
    try:
        reader = KafkaAuditLog(stream)
        page = asyncio.run(reader.history(flag, filters, after_version=after_version, limit=limit))
    except AuditLogUnavailable as e:
        raise _fail(e.message) from e
    for entry in page.entries:
        typer.echo(entry.model_dump_json())
    if page.next_cursor is not None:
        typer.echo(f"# more: --after-version {page.next_cursor}", err=True)


@app.command("as-of")
def as_of(
    instant: str,
    environment: Annotated[str | None, typer.Option(help="Every flag of this environment.")] = None,
    flag: Annotated[list[str] | None, typer.Option(help="Only these flags.")] = None,
    publish_grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds: every event was published this soon after it occurred (lets the read stop early)."
        ),
    ] = None,
    workers: WorkersOption = 0,
) -> None:
    """The configuration as it was at INSTANT: one flag (--flag without --environment), or an environment."""
    at = _instant(instant)
    assert at is not None
    stream, _ = _servers()
    if environment is None and not flag:
        raise _fail("give --environment, or --flag")
    try:
        if environment is None:
            for key in flag or ():
                typer.echo(asyncio.run(flag_as_of(stream, key, at)).model_dump_json())
            return
        grace = None if publish_grace is None else timedelta(seconds=publish_grace)
        snapshot = asyncio.run(
            environment_as_of(
                stream, environment, at, flags=flag, publish_grace=grace, workers=_workers(workers)
            )
        )
    except AuditLogUnavailable as e:
        raise _fail(e.message) from e
    for key in sorted(snapshot.flags):
        typer.echo(snapshot.flags[key].model_dump_json())
    typer.echo(f"# {len(snapshot.flags)} flag(s), {snapshot.events_read} event(s) read", err=True)


@app.command()
def verify(
    postgres: PostgresOption = True,
    every: Annotated[int, typer.Option(help="Print progress every N events.")] = 10_000,
    workers: WorkersOption = 0,
) -> None:
    """Replay the whole log: hash chains, gapless versions, agreement with Postgres; exit 1 if any differ."""
    stream, database = _servers()
    if postgres and database is None:
        raise _fail("no Postgres: set DATABASE_URL, or pass --no-postgres")

    def show(phase: str, count: int) -> None:
        typer.echo(f"# {phase}: {count} events checked", err=True)

    try:
        report = asyncio.run(
            verify_log(
                stream,
                database_url=database if postgres else None,
                progress=show,
                progress_every=every,
                workers=_workers(workers),
            )
        )
    except AuditLogUnavailable as e:
        raise _fail(e.message) from e
    _print_json(
        {
            "ok": report.ok,
            "kafka_events": report.kafka_events,
            "streams": report.streams,
            "redeliveries": report.redeliveries,
            "older_duplicates": report.older_duplicates,
            "postgres_rows": report.postgres_rows,
            "discrepancies": report.discrepancies,
            "first_discrepancy": None if report.first is None else report.first.describe(),
            "elapsed_s": round(report.elapsed_s, 3),
        }
    )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    since: InstantOption = None,
    until: InstantOption = None,
    output: Annotated[Path | None, typer.Option(help="File to write [default: stdout].")] = None,
) -> None:
    """Stream the log (events with since <= occurred_at <= until) with hashes, for a SIEM."""
    if fmt not in ("jsonl", "csv"):
        raise _fail("--format must be jsonl or csv")
    chosen: ExportFormat = "csv" if fmt == "csv" else "jsonl"
    stream, _ = _servers()
    try:
        if output is None:
            report = asyncio.run(
                export_log(stream, sys.stdout, fmt=chosen, since=_instant(since), until=_instant(until))
            )
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                report = asyncio.run(
                    export_log(stream, out, fmt=chosen, since=_instant(since), until=_instant(until))
                )
    except AuditLogUnavailable as e:
        raise _fail(e.message) from e
    typer.echo(
        f"# {report.events} event(s) exported, {report.skipped_redeliveries} redelivery(ies) skipped",
        err=True,
    )
    if report.first_break is not None:
        typer.echo(
            f"# warning: the log has a broken chain at {report.first_break.flag_key} "
            f"v{report.first_break.version} ({report.first_break.problem})",
            err=True,
        )
