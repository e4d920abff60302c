"""``flagstream dlq``: list, show, redrive and purge dead letters (Postgres at DATABASE_URL).

Purges and redrives are recorded as events of ``ops:dead-letters`` like the API's, with the actor
``--actor`` or ``cli:<OS user>``. The CLI has no stage redrivers: redriven letters are released by
the running stage workers, in version order. Exit codes: 0 done, 1 no such letter, 2 usage or
settings, 3 the letter is already resolved, 4 the database is unavailable.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

from events.deadletters import (
    MAX_PAGE,
    STAGES,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterResolved,
    DeadLetterStore,
    Stage,
)
from events.deadletters.operations import (
    DeadLetterOperations,
    OperationsJournal,
    PostgresStreamHead,
    RedriveResult,
    RedriverRegistry,
)
from events.errors import StoreUnavailable
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from monitoring.logging import configure_logging
from runtime.settings import SettingsError, load_settings

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)
T = TypeVar("T")

StageOption = Annotated[str | None, typer.Option("--stage", help="relay | projector | rollback")]
ErrorClassOption = Annotated[str | None, typer.Option("--error-class", help="e.g. MalformedEvent")]
FlagOption = Annotated[str | None, typer.Option("--flag", help="Flag (stream) key")]
MinAgeOption = Annotated[
    int | None, typer.Option("--min-age", min=0, help="Failed first >= this many seconds ago")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who acts (default: cli:<OS user>)")]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _database_url() -> str:
    """The database to work on; logs go to stderr so stdout carries only the tables and JSON."""
    try:
        settings = load_settings()
    except SettingsError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    configure_logging(settings.log_level, json=settings.log_json)
    url = settings.database_url
    if not url:
        typer.echo("set DATABASE_URL (or FLAGSTREAM_DATABASE_URL) to the Flagstream database", err=True)
        raise typer.Exit(2)
    return url


def _run(action: Callable[[DeadLetterOperations], Awaitable[T]]) -> T:
    url = _database_url()

    async def _go() -> T:
        await apply_migrations(url)
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            journal = OperationsJournal(PostgresEventStore(pool), PostgresStreamHead(pool), clock=_utc_now)
            return await action(DeadLetterOperations(DeadLetterStore(pool), journal, RedriverRegistry()))
        finally:
            await pool.close()

    try:
        return asyncio.run(_go())
    except DeadLetterNotFound as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from e
    except DeadLetterResolved as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(3) from e
    except StoreUnavailable as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(4) from e


def _stage(value: str | None) -> Stage | None:
    if value is None:
        return None
    for stage in STAGES:
        if stage == value:
            return stage
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(STAGES)}", param_hint="--stage")


def _actor(value: str | None) -> str:
    return value if value else f"cli:{getpass.getuser()}"


def _letter_json(letter: DeadLetter, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": letter.id,
        "stage": letter.stage,
        "flag": letter.flag_key,
        "version": letter.version,
        "event_id": None if letter.event_id is None else str(letter.event_id),
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "waiting": letter.is_waiting,
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at.isoformat(),
        "last_failed_at": letter.last_failed_at.isoformat(),
        "kafka": _kafka(letter),
        "status": letter.status,
        "resolved_at": None if letter.resolved_at is None else letter.resolved_at.isoformat(),
        "resolved_by": letter.resolved_by,
        "resolve_reason": letter.resolve_reason,
        "reprocessed_at": None if letter.reprocessed_at is None else letter.reprocessed_at.isoformat(),
    }
    if detail:
        data["event"] = letter.event_body
        raw = letter.raw_record
        data["raw_record_base64"] = None if raw is None else base64.b64encode(raw).decode("ascii")
    return data


def _kafka(letter: DeadLetter) -> dict[str, Any] | None:
    k = letter.kafka
    return None if k is None else {"topic": k.topic, "partition": k.partition, "offset": k.offset}


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _print_table(letters: list[DeadLetter]) -> None:
    typer.echo("ID\tSTAGE\tFLAG\tVERSION\tSTATUS\tATTEMPTS\tFIRST FAILED\tERROR")
    for x in letters:
        first = x.first_failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        error = f"{x.error_class}: {x.error_message}"[:80]
        version = "-" if x.version is None else str(x.version)
        typer.echo(
            f"{x.id}\t{x.stage}\t{x.flag_key or '-'}\t{version}\t{x.status}\t{x.attempts}\t{first}\t{error}"
        )


def _print_redrive(result: RedriveResult, as_json: bool) -> None:
    ids = [x.id for x in result.letters]
    summary: dict[str, Any] = {
        "redriven": len(result.letters),
        "ids": ids,
        "by_stage": result.counts_by_stage(),
        "more": result.more,
        "event_id": None if result.event is None else str(result.event.event_id),
    }
    if as_json:
        _print_json(summary)
        return
    typer.echo(f"redriven {len(result.letters)} letter(s): {' '.join(str(i) for i in ids) or '-'}")
    if result.more:
        typer.echo("more letters match: run the command again", err=True)


@app.command("list")
def list_letters(
    stage: StageOption = None,
    error_class: ErrorClassOption = None,
    flag: FlagOption = None,
    min_age: MinAgeOption = None,
    status: Annotated[str, typer.Option(help="parked | redriven | purged | any")] = "parked",
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE)] = 50,
    after: Annotated[int | None, typer.Option(help="Show letters after this id (next page)")] = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters (parked by default), oldest first."""
    if status not in ("parked", "redriven", "purged", "any"):
        raise typer.BadParameter(f"{status!r} is not parked, redriven, purged or any", param_hint="--status")
    flt = DeadLetterFilter(
        stage=_stage(stage),
        error_class=error_class,
        flag_key=flag,
        min_age=None if min_age is None else timedelta(seconds=min_age),
        status=None if status == "any" else status,  # type: ignore[arg-type]  # checked above
    )
    page = _run(lambda ops: ops.dlq.list(flt, after_id=after, limit=limit))
    if as_json:
        _print_json({"items": [_letter_json(x) for x in page.items], "next_after": page.next_after_id})
        return
    _print_table(page.items)
    if page.next_after_id is not None:
        typer.echo(f"more: --after {page.next_after_id}", err=True)


@app.command("show")
def show(letter_id: Annotated[int, typer.Argument(min=1)], as_json: JsonOption = False) -> None:
    """Show one dead letter with its event (or raw record)."""
    letter = _run(lambda ops: ops.dlq.get(letter_id))
    data = _letter_json(letter, detail=True)
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key}: {'-' if value is None else value}")


@app.command("redrive")
def redrive(
    letter_id: Annotated[
        int | None, typer.Argument(min=1, help="One letter; or filter with the options")
    ] = None,
    stage: StageOption = None,
    error_class: ErrorClassOption = None,
    flag: FlagOption = None,
    min_age: MinAgeOption = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE)] = 100,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the event)")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Redrive one parked letter, or every parked letter matching the filter (up to --limit)."""
    filtered = any(v is not None for v in (stage, error_class, flag, min_age))
    if (letter_id is None) == (not filtered):
        raise typer.BadParameter("give a letter id or at least one of --stage/--error-class/--flag/--min-age")
    who = _actor(actor)
    if letter_id is not None:
        result = _run(lambda ops: ops.redrive(letter_id, actor=who, reason=reason))
    else:
        flt = DeadLetterFilter(
            stage=_stage(stage),
            error_class=error_class,
            flag_key=flag,
            min_age=None if min_age is None else timedelta(seconds=min_age),
        )
        described = {
            k: v
            for k, v in {
                "stage": stage,
                "error_class": error_class,
                "flag": flag,
                "min_age_seconds": min_age,
            }.items()
            if v is not None
        }
        result = _run(
            lambda ops: ops.redrive_matching(
                flt, actor=who, reason=reason, limit=limit, described_filter=described
            )
        )
    _print_redrive(result, as_json)


@app.command("purge")
def purge(
    letter_id: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str, typer.Option(help="Why the event is dropped for good (required)")],
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Purge a parked letter: its stage skips the event for good. Recorded as DeadLetterPurged."""
    if not reason.strip():
        raise typer.BadParameter("a purge needs a non-blank reason", param_hint="--reason")
    who = _actor(actor)
    letter, event = _run(lambda ops: ops.purge(letter_id, actor=who, reason=reason.strip()))
    if as_json:
        _print_json(
            {"letter": _letter_json(letter), "event_id": str(event.event_id), "event_version": event.version}
        )
        return
    typer.echo(f"purged {letter.id} ({letter.stage}, {letter.flag_key or '-'} v{letter.version}) by {who}")


@app.command("blocked")
def blocked(as_json: JsonOption = False) -> None:
    """Flags whose later events wait behind a dead letter, per stage."""

    async def _collect(ops: DeadLetterOperations) -> dict[str, list[str]]:
        return {stage: sorted(await ops.dlq.blocked_flags(stage)) for stage in STAGES}

    stages = _run(_collect)
    if as_json:
        _print_json(stages)
        return
    for stage, flags in stages.items():
        typer.echo(f"{stage}\t{' '.join(flags) or '-'}")
