"""What importing flagd flags into one environment changes: one step per flag, as commands (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.commands import Command, CreateFlag, SetEnvironmentConfig, UpdateFlagMetadata
from core.flagd.errors import FlagdUnsupported
from core.model import Flag

__all__ = ["ImportAction", "ImportStep", "plan_import"]


class ImportAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class ImportStep:
    key: str
    action: ImportAction
    commands: tuple[Command, ...]


def plan_import(
    imported: Sequence[Flag],
    existing: Mapping[str, tuple[Flag, int]],
    environment: str,
    reason: str | None = None,
) -> list[ImportStep]:
    """A new flag is created with the environment's configuration; an existing flag of the same kind
    gets the imported variations (when they differ) and the environment's whole configuration replaced
    (other environments untouched). A flag of another kind, or archived, is refused with its path."""
    steps: list[ImportStep] = []
    for flag in imported:
        config = flag.environments[environment]
        known = existing.get(flag.key)
        if known is None:
            steps.append(
                ImportStep(
                    flag.key,
                    ImportAction.CREATE,
                    (CreateFlag(flag_key=flag.key, flag=flag, reason=reason, expected_version=0),),
                )
            )
            continue
        current, version = known
        path = f"$.flags.{flag.key}"
        if current.kind is not flag.kind:
            raise FlagdUnsupported(
                path, f"flag exists as a {current.kind.value} flag; the file makes it {flag.kind.value}"
            )
        if current.archived:
            raise FlagdUnsupported(path, "flag is archived; restore it before importing")
        commands: list[Command] = []
        changes: dict[str, Any] = {}
        if current.variations != flag.variations:
            changes["variations"] = flag.variations
        if flag.metadata and current.metadata != flag.metadata:  # a file without metadata keeps the flag's
            changes["metadata"] = flag.metadata
        if changes:
            commands.append(
                UpdateFlagMetadata(flag_key=flag.key, reason=reason, expected_version=version, **changes)
            )
        if current.environments.get(environment) != config:
            commands.append(
                SetEnvironmentConfig(
                    flag_key=flag.key,
                    environment=environment,
                    config=config,
                    reason=reason,
                    expected_version=version + len(commands),
                )
            )
        action = ImportAction.UPDATE if commands else ImportAction.UNCHANGED
        steps.append(ImportStep(flag.key, action, tuple(commands)))
    return steps
