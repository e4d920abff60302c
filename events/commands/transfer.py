"""Import and export of flags and segments (JSON), and bulk actions on flags.

Export reads the event store (what is committed, not what is projected). Import computes the plan
(:func:`core.transfer.plan_import`); a dry run returns it with its digest, and an import applies it
only when given that digest and the plan is still the same (otherwise ``409 plan_changed``: look
again). Applying issues one command per change through the normal command path — each its own
event(s), its own actor and reason — and reports every change's outcome: one failure does not
stop the others, and nothing is undone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from core.commands import (
    ArchiveFlag,
    ArchiveSegment,
    Command,
    CreateFlag,
    CreateSegment,
    DisableFlag,
    EnableFlag,
    SetEnvironmentConfig,
    UpdateFlagMetadata,
    UpdateSegment,
)
from core.errors import FlagstreamError
from core.events import METADATA_FIELDS
from core.model import Flag
from core.state import FlagState
from core.transfer import ExportDocument, PlannedChange, build_export, plan_digest, plan_import
from events.commands.segments import SegmentService
from events.commands.service import CommandMeta, CommandOutcome

__all__ = ["BulkAction", "PlanChanged", "TransferService", "run_bulk"]

log = structlog.get_logger("events.commands.transfer")

Execute = Callable[[Command, CommandMeta], Awaitable[CommandOutcome]]
LoadFlag = Callable[[str], Awaitable[FlagState]]
StreamKeys = Callable[[], Awaitable[list[str]]]
BulkAction = Literal["enable", "disable", "archive"]


class PlanChanged(FlagstreamError):
    code = "plan_changed"
    http_status = 409


@dataclass(frozen=True, slots=True)
class ImportPlan:
    changes: list[PlannedChange]
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"plan_id": self.digest, "changes": [c.model_dump(mode="json") for c in self.changes]}


class TransferService:
    def __init__(
        self, execute: Execute, load_flag: LoadFlag, stream_keys: StreamKeys, segments: SegmentService
    ) -> None:
        self._execute = execute
        self._load_flag = load_flag
        self._stream_keys = stream_keys
        self._segments = segments

    async def export(self, environment: str | None, *, include_archived: bool = False) -> ExportDocument:
        flags = [f for f in (await self._flags()).values() if include_archived or not f.archived]
        states = await self._segments.list(include_archived=include_archived)
        return build_export(flags, [s.segment for s in states if s.segment is not None], environment)

    async def plan(self, document: ExportDocument) -> ImportPlan:
        segments = {s.key: s.segment for s in await self._segments.list(include_archived=True) if s.segment}
        changes = plan_import(document, await self._flags(), segments)
        return ImportPlan(changes, plan_digest(changes))

    async def apply(
        self, document: ExportDocument, plan_id: str, meta: CommandMeta, *, reason: str | None
    ) -> tuple[ImportPlan, list[dict[str, Any]]]:
        plan = await self.plan(document)
        if plan.digest != plan_id:
            raise PlanChanged(
                "the import plan changed since the dry run: review it again",
                details=[{"path": "plan_id", "message": f"current plan is {plan.digest}"}],
            )
        by_key = {f.key: f for f in document.flags}
        by_segment = {s.key: s for s in document.segments}
        results = []
        for change in plan.changes:
            command = _command_for(change, by_key, by_segment, reason)
            results.append(
                await _outcome_of(self._execute, command, meta, change.model_dump(exclude={"diff"}))
            )
        log.info("transfer.imported", changes=len(results), failed=sum(1 for r in results if not r["ok"]))
        return plan, results

    async def _flags(self) -> dict[str, Flag]:
        flags: dict[str, Flag] = {}
        for key in sorted(await self._stream_keys()):
            if ":" in key:  # segment:, ops:, alert:, incident: streams
                continue
            flag = (await self._load_flag(key)).flag
            if flag is not None:
                flags[key] = flag
        return flags


def _command_for(
    change: PlannedChange, flags: dict[str, Flag], segments: dict[str, Any], reason: str | None
) -> Command:
    key = change.key
    if change.kind == "segment":
        segment = segments[key].model_copy(update={"archived": False})
        match change.action:
            case "create":
                return CreateSegment(segment_key=key, segment=segment, reason=reason, expected_version=0)
            case "update":
                return UpdateSegment(segment_key=key, segment=segment, reason=reason)
            case _:
                return ArchiveSegment(segment_key=key, reason=reason)
    flag = flags[key]
    match change.action:
        case "create":
            created = flag.model_copy(update={"archived": False})
            return CreateFlag(flag_key=key, flag=created, reason=reason, expected_version=0)
        case "update_metadata":
            fields = {name: getattr(flag, name) for name in METADATA_FIELDS}
            return UpdateFlagMetadata(flag_key=key, reason=reason, **fields)
        case "set_environment":
            assert change.environment is not None
            config = flag.environments[change.environment]
            return SetEnvironmentConfig(
                flag_key=key, environment=change.environment, config=config, reason=reason
            )
        case _:
            return ArchiveFlag(flag_key=key, reason=reason)


async def _outcome_of(
    execute: Execute, command: Command, meta: CommandMeta, item: dict[str, Any]
) -> dict[str, Any]:
    """Run one command; its result or its error (a domain or store error is reported, not raised)."""
    try:
        outcome = await execute(command, meta)
    except FlagstreamError as e:
        return {**item, "ok": False, "error": {**e.to_dict(), "code": getattr(e, "error_code", e.code)}}
    return {**item, "ok": True, "version": outcome.version, "changed": bool(outcome.events)}


async def run_bulk(
    execute: Execute,
    action: BulkAction,
    flags: Sequence[str],
    environment: str | None,
    meta: CommandMeta,
    *,
    reason: str | None,
) -> list[dict[str, Any]]:
    """One command (one event) per flag, in the order given; every flag's outcome."""
    results = []
    for key in flags:
        command: Command
        if action == "archive":
            command = ArchiveFlag(flag_key=key, reason=reason)
        elif action == "enable":
            command = EnableFlag(flag_key=key, environment=environment or "", reason=reason)
        else:
            command = DisableFlag(flag_key=key, environment=environment or "", reason=reason)
        results.append(await _outcome_of(execute, command, meta, {"key": key}))
    log.info("bulk.done", action=action, flags=len(results), failed=sum(1 for r in results if not r["ok"]))
    return results
