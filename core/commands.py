"""Commands: what a producer asks of one flag (or segment) stream.

Every command names its stream (``flag_key`` or ``segment_key``), may carry the
``expected_version`` the caller last saw (a mismatch is ``409 version_conflict``; ``None``
skips the check) and a free-text ``reason`` for the audit log. The actor, idempotency key and
correlation ids travel beside the command (they belong to the envelope, not to the decision).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.events import METADATA_FIELDS, AlertInfo
from core.model import (
    ENVIRONMENT_PATTERN,
    FLAG_KEY_PATTERN,
    EnvironmentConfig,
    Flag,
    FlagMetadata,
    Rule,
    Segment,
    Target,
    Variation,
    WeightedVariation,
)

__all__ = [
    "ArchiveFlag",
    "ArchiveSegment",
    "Command",
    "CreateFlag",
    "CreateSegment",
    "DisableFlag",
    "EnableFlag",
    "FlagCommand",
    "RecordRollbackSkipped",
    "RestoreFlag",
    "RollBackEnvironment",
    "SegmentCommand",
    "SetEnvironmentConfig",
    "SetRollout",
    "SetRules",
    "SetTargets",
    "UpdateFlagMetadata",
    "UpdateSegment",
]

EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    expected_version: int | None = Field(default=None, ge=0)
    reason: str | None = Field(default=None, max_length=1024)


class FlagCommand(Command):
    flag_key: str = Field(pattern=FLAG_KEY_PATTERN)


class SegmentCommand(Command):
    segment_key: str = Field(pattern=FLAG_KEY_PATTERN)


def _key_from(data: Any, field: str, nested: str) -> Any:
    """Fill ``field`` from ``data[nested].key`` when the caller left it out."""
    if isinstance(data, dict) and field not in data:
        inner = data.get(nested)
        key = inner.get("key") if isinstance(inner, dict) else getattr(inner, "key", None)
        if key is not None:
            return {**data, field: key}
    return data


class CreateFlag(FlagCommand):
    """Create a flag (``flag_key`` defaults to ``flag.key``; they must agree)."""

    flag: Flag

    @model_validator(mode="before")
    @classmethod
    def _default_key(cls, data: Any) -> Any:
        return _key_from(data, "flag_key", "flag")


class UpdateFlagMetadata(FlagCommand):
    """Change descriptive fields. A field left out (or ``None``) is unchanged — except
    ``owner``, which is cleared when given explicitly as ``None``. Changing ``variations``
    re-validates every environment against the new variations; the kind cannot change."""

    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    owner: str | None = None
    temporary: bool | None = None
    variations: tuple[Variation, ...] | None = None
    metadata: FlagMetadata | None = None  # replaces the whole map; {} clears it

    def changed_fields(self) -> dict[str, Any]:
        """The metadata fields this command sets, with their new values (models, not JSON)."""
        return {
            name: getattr(self, name)
            for name in sorted(METADATA_FIELDS)
            if name in self.model_fields_set and (getattr(self, name) is not None or name == "owner")
        }


class SetEnvironmentConfig(FlagCommand):
    """Replace an environment's whole configuration (creating the environment if needed)."""

    environment: EnvironmentName
    config: EnvironmentConfig


class EnableFlag(FlagCommand):
    environment: EnvironmentName


class DisableFlag(FlagCommand):
    environment: EnvironmentName


class SetRollout(FlagCommand):
    """Serve a weighted rollout from a rule (``rule_id``) or from the default serve (``None``).

    ``bucket_by`` / ``salt`` left ``None`` keep what the serve had before.
    """

    environment: EnvironmentName
    rule_id: str | None = None
    rollout: tuple[WeightedVariation, ...] = Field(min_length=1)
    bucket_by: str | None = Field(default=None, min_length=1, max_length=256)
    salt: str | None = Field(default=None, max_length=256)


class SetRules(FlagCommand):
    environment: EnvironmentName
    rules: tuple[Rule, ...]


class SetTargets(FlagCommand):
    environment: EnvironmentName
    targets: tuple[Target, ...]


class ArchiveFlag(FlagCommand):
    pass


class RestoreFlag(FlagCommand):
    pass


class RollBackEnvironment(FlagCommand):
    """Compensating change: put back the configuration in force at ``to_version``.

    ``decide`` stays pure, so the application service replays the stream and passes
    ``restored_config`` (``None`` when the environment did not exist at ``to_version``: the
    environment is then *disabled* rather than removed). ``undone_versions`` and ``alert`` are
    recorded for the audit trail.
    """

    environment: EnvironmentName
    to_version: int = Field(ge=0)
    restored_config: EnvironmentConfig | None
    undone_versions: tuple[int, ...] = ()
    alert: AlertInfo | None = None


class RecordRollbackSkipped(FlagCommand):
    """Record that an alert implicated this flag but no rollback was made (and why)."""

    environment: EnvironmentName
    why: str = Field(min_length=1, max_length=1024)
    alert: AlertInfo | None = None


class CreateSegment(SegmentCommand):
    """Create a segment (``segment_key`` defaults to ``segment.key``; they must agree)."""

    segment: Segment

    @model_validator(mode="before")
    @classmethod
    def _default_key(cls, data: Any) -> Any:
        return _key_from(data, "segment_key", "segment")


class UpdateSegment(SegmentCommand):
    """Replace a segment's definition (its key cannot change)."""

    segment: Segment


class ArchiveSegment(SegmentCommand):
    pass
