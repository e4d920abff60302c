"""Import/export of flags and segments as JSON: the document, and the pure import plan (a diff).

An export document (``format: flagstream.export/v1``) holds segments and flags — every environment,
or one (``environment``). :func:`plan_import` compares it with what exists and lists the commands
an import would issue, each with its field-level diff; nothing else changes (a flag or segment that
exists but is not in the document is left alone). The plan is deterministic, and :func:`plan_digest`
names it, so an import can insist on applying exactly the plan a person reviewed in a dry run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.diff import diff
from core.events import METADATA_FIELDS
from core.model import ENVIRONMENT_PATTERN, Flag, Segment

__all__ = ["EXPORT_FORMAT", "ExportDocument", "PlannedChange", "build_export", "plan_digest", "plan_import"]

EXPORT_FORMAT: Literal["flagstream.export/v1"] = "flagstream.export/v1"

Action = Literal["create", "update", "update_metadata", "set_environment", "archive"]


class ExportDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["flagstream.export/v1"] = EXPORT_FORMAT
    environment: str | None = Field(default=None, pattern=ENVIRONMENT_PATTERN)
    segments: tuple[Segment, ...] = ()
    flags: tuple[Flag, ...] = ()


class PlannedChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["segment", "flag"]
    key: str
    action: Action
    environment: str | None = None
    diff: list[dict[str, Any]] = Field(default_factory=list)


def build_export(flags: list[Flag], segments: list[Segment], environment: str | None) -> ExportDocument:
    """The document for ``flags`` and ``segments`` (with ``environment``: only that environment's config)."""
    if environment is not None:
        flags = [
            f.model_copy(
                update={"environments": {k: v for k, v in f.environments.items() if k == environment}}
            )
            for f in flags
        ]
    return ExportDocument(
        environment=environment,
        segments=tuple(sorted(segments, key=lambda s: s.key)),
        flags=tuple(sorted(flags, key=lambda f: f.key)),
    )


def plan_import(
    document: ExportDocument, flags: Mapping[str, Flag], segments: Mapping[str, Segment]
) -> list[PlannedChange]:
    """The changes that make what exists match ``document`` (segments first: flags may use them)."""
    changes: list[PlannedChange] = []
    for segment in document.segments:
        current = segments.get(segment.key)
        if current is None:
            changes.append(
                PlannedChange(kind="segment", key=segment.key, action="create", diff=_diff(None, segment))
            )
        elif segment.archived and not current.archived:
            changes.append(PlannedChange(kind="segment", key=segment.key, action="archive"))
        elif not current.archived and _dump(current) != _dump(segment.model_copy(update={"archived": False})):
            changes.append(
                PlannedChange(
                    kind="segment",
                    key=segment.key,
                    action="update",
                    diff=_diff(current, segment.model_copy(update={"archived": False})),
                )
            )
    for flag in document.flags:
        changes.extend(_flag_changes(flag, flags.get(flag.key), document.environment))
    return changes


def _flag_changes(flag: Flag, current: Flag | None, environment: str | None) -> list[PlannedChange]:
    if current is None:
        created = flag.model_copy(update={"archived": False})
        return [PlannedChange(kind="flag", key=flag.key, action="create", diff=_diff(None, created))]
    out: list[PlannedChange] = []
    before = {f: _jsonable(getattr(current, f)) for f in sorted(METADATA_FIELDS)}
    after = {f: _jsonable(getattr(flag, f)) for f in sorted(METADATA_FIELDS)}
    if before != after:
        out.append(
            PlannedChange(kind="flag", key=flag.key, action="update_metadata", diff=_changes(before, after))
        )
    for env in sorted(flag.environments):
        if environment is not None and env != environment:
            continue
        old = current.environments.get(env)
        new = flag.environments[env]
        if old is None or _dump(old) != _dump(new):
            out.append(
                PlannedChange(
                    kind="flag", key=flag.key, action="set_environment", environment=env, diff=_diff(old, new)
                )
            )
    if flag.archived and not current.archived:
        out.append(PlannedChange(kind="flag", key=flag.key, action="archive"))
    return out


def plan_digest(changes: list[PlannedChange]) -> str:
    """A short, stable name of a plan (SHA-256 of its canonical JSON, 16 hex digits)."""
    text = json.dumps([c.model_dump(mode="json") for c in changes], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return _dump(value)
    return value


def _diff(before: BaseModel | None, after: BaseModel) -> list[dict[str, Any]]:
    return _changes(None if before is None else _dump(before), _dump(after))


def _changes(before: Any, after: Any) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in diff(before, after)]
