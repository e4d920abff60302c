"""``decide``: from a stream's current state and a command, the new events — or a domain error.

Pure: no I/O, no clock, no ids. The caller seals the returned drafts (``core.envelope.seal``)
with versions ``state.version + 1, + 2, ...``.

Checks, in order: existence (``flag_not_found`` / ``flag_exists``), ``expected_version``
(``version_conflict``), archived (``flag_archived``: every command on an archived flag but
``RestoreFlag``), the command's own sense (``invalid_command``), then the resulting
configuration (``invalid_configuration``, every problem with its field path).

A command that would change nothing (enable an enabled environment, set the same rules, restore
a live flag...) returns ``[]``: no event, the version stays; the API answers with the unchanged
version. ``RecordRollbackSkipped`` always records an event. ``DisableFlag``, and a rollback to a
disabled configuration, are never refused for cross-reference reasons (turning a flag off must
always be possible); every other change is validated against the catalog. A rollback whose
``restored_config`` is ``None`` (the environment did not exist at ``to_version``) disables the
environment.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from core.commands import (
    ArchiveFlag,
    ArchiveSegment,
    CreateFlag,
    CreateSegment,
    DisableFlag,
    EnableFlag,
    FlagCommand,
    RecordRollbackSkipped,
    RestoreFlag,
    RollBackEnvironment,
    SegmentCommand,
    SetEnvironmentConfig,
    SetRollout,
    SetRules,
    SetTargets,
    UpdateFlagMetadata,
    UpdateSegment,
)
from core.diff import diff
from core.envelope import EventDraft
from core.errors import (
    EnvironmentNotFound,
    FlagArchived,
    FlagExists,
    FlagNotFound,
    InvalidCommand,
    InvalidConfiguration,
    SegmentArchived,
    SegmentExists,
    SegmentInUse,
    SegmentNotFound,
    VersionConflict,
)
from core.events import (
    EnvironmentChangedPayload,
    EnvironmentConfiguredPayload,
    FlagArchivedPayload,
    FlagCreatedPayload,
    FlagDisabledPayload,
    FlagEnabledPayload,
    FlagMetadataUpdatedPayload,
    FlagRestoredPayload,
    FlagRolledBackPayload,
    RollbackSkippedPayload,
    RolloutChangedPayload,
    RulesChangedPayload,
    SegmentArchivedPayload,
    SegmentCreatedPayload,
    SegmentUpdatedPayload,
    TargetsChangedPayload,
    to_draft,
)
from core.model import EnvironmentConfig, Flag, Segment, Serve
from core.state import Catalog, FlagState, SegmentState
from core.validation import (
    ensure_valid,
    issues_from_validation_error,
    validate_environment,
    validate_flag,
    validate_segment,
)

__all__ = ["decide", "decide_segment"]


def decide(state: FlagState, command: FlagCommand, catalog: Catalog) -> list[EventDraft]:
    """The events ``command`` produces on the flag ``state``, or a :class:`~core.errors.DomainError`."""
    if command.flag_key != state.key:
        raise InvalidCommand(f"command for flag {command.flag_key!r} given the state of {state.key!r}")
    if isinstance(command, CreateFlag):
        return _create_flag(state, command, catalog)
    flag = _existing_flag(state, command)
    match command:
        case UpdateFlagMetadata():
            return _update_metadata(flag, command, catalog)
        case RollBackEnvironment():
            return _roll_back(flag, state.version, command, catalog)
        case RecordRollbackSkipped():
            skipped = RollbackSkippedPayload(
                environment=command.environment, why=command.why, alert=command.alert
            )
            return [to_draft(skipped, environment=command.environment)]
        case ArchiveFlag():
            return [to_draft(FlagArchivedPayload())]
        case RestoreFlag():
            return [to_draft(FlagRestoredPayload())] if flag.archived else []
    return _decide_environment(flag, command, catalog)


def _decide_environment(flag: Flag, command: FlagCommand, catalog: Catalog) -> list[EventDraft]:
    match command:
        case SetEnvironmentConfig():
            return _change_environment(
                flag, command.environment, command.config, catalog, EnvironmentConfiguredPayload
            )
        case EnableFlag():
            config = _environment(flag, command.environment).model_copy(update={"enabled": True})
            return _change_environment(flag, command.environment, config, catalog, FlagEnabledPayload)
        case DisableFlag():
            config = _environment(flag, command.environment).model_copy(update={"enabled": False})
            return _change_environment(flag, command.environment, config, None, FlagDisabledPayload)
        case SetRollout():
            return _set_rollout(flag, command, catalog)
        case SetRules():
            config = _rebuild(_environment(flag, command.environment), rules=command.rules)
            return _change_environment(flag, command.environment, config, catalog, RulesChangedPayload)
        case SetTargets():
            config = _rebuild(_environment(flag, command.environment), targets=command.targets)
            return _change_environment(flag, command.environment, config, catalog, TargetsChangedPayload)
    raise InvalidCommand(f"unsupported command {type(command).__name__}")


def decide_segment(state: SegmentState, command: SegmentCommand, catalog: Catalog) -> list[EventDraft]:
    """The events ``command`` produces on the segment ``state``, or a domain error."""
    if command.segment_key != state.key:
        raise InvalidCommand(f"command for segment {command.segment_key!r} given the state of {state.key!r}")
    if isinstance(command, CreateSegment):
        if state.segment is not None:
            raise SegmentExists(f"segment {state.key!r} already exists")
        _check_version(command.expected_version, state.version, state.stream)
        if command.segment.archived:
            raise InvalidCommand("a segment cannot be created archived", details=[_SEGMENT_NOT_ARCHIVED])
        ensure_valid(validate_segment(command.segment, catalog), "invalid segment")
        return [to_draft(SegmentCreatedPayload(segment=command.segment))]
    if state.segment is None:
        raise SegmentNotFound(f"segment {state.key!r} does not exist")
    _check_version(command.expected_version, state.version, state.stream)
    if state.segment.archived:
        raise SegmentArchived(f"segment {state.key!r} is archived")
    match command:
        case UpdateSegment():
            return _update_segment(state.segment, command, catalog)
        case ArchiveSegment():
            _refuse_if_in_use(state.key, catalog)
            return [to_draft(SegmentArchivedPayload())]
    raise InvalidCommand(f"unsupported command {type(command).__name__}")


def _refuse_if_in_use(key: str, catalog: Catalog) -> None:
    flags = sorted(catalog.segment_users.get(key, frozenset()))
    segments = sorted(k for k, used in catalog.segment_dependencies.items() if key in used and k != key)
    users = [f"flag {f!r}" for f in flags] + [f"segment {s!r}" for s in segments]
    if users:
        raise SegmentInUse(
            f"segment {key!r} is used by {', '.join(users)}",
            details=[_at("segment_key", f"used by {u}") for u in users],
        )


def _check_version(expected: int | None, current: int, stream: str) -> None:
    if expected is not None and expected != current:
        raise VersionConflict(expected_version=expected, current_version=current, stream=stream)


def _at(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


_SEGMENT_NOT_ARCHIVED = _at("segment.archived", "must be false")


def _create_flag(state: FlagState, command: CreateFlag, catalog: Catalog) -> list[EventDraft]:
    if state.flag is not None:
        raise FlagExists(f"flag {state.key!r} already exists")
    _check_version(command.expected_version, state.version, state.stream)
    if command.flag.key != command.flag_key:
        raise InvalidCommand(
            f"flag_key {command.flag_key!r} differs from flag.key {command.flag.key!r}",
            details=[_at("flag.key", "must equal flag_key")],
        )
    if command.flag.archived:
        raise InvalidCommand(
            "a flag cannot be created archived", details=[_at("flag.archived", "must be false")]
        )
    ensure_valid(validate_flag(command.flag, catalog), "invalid flag")
    return [to_draft(FlagCreatedPayload(flag=command.flag))]


def _existing_flag(state: FlagState, command: FlagCommand) -> Flag:
    if state.flag is None:
        raise FlagNotFound(f"flag {state.key!r} does not exist")
    _check_version(command.expected_version, state.version, state.stream)
    if state.flag.archived and not isinstance(command, RestoreFlag):
        raise FlagArchived(f"flag {state.key!r} is archived; restore it first")
    return state.flag


def _environment(flag: Flag, environment: str) -> EnvironmentConfig:
    config = flag.environments.get(environment)
    if config is None:
        raise EnvironmentNotFound(
            f"flag {flag.key!r} has no environment {environment!r}",
            details=[_at("environment", "not configured for this flag")],
        )
    return config


def _rebuild(config: EnvironmentConfig, **changes: Any) -> EnvironmentConfig:
    """``config`` with ``changes``, validated as a whole (rule id uniqueness etc.)."""
    try:
        return EnvironmentConfig.model_validate({**dict(config), **changes})
    except ValidationError as e:
        raise InvalidConfiguration("invalid configuration", details=issues_from_validation_error(e)) from e


def _json(model: BaseModel | None) -> Any:
    return {} if model is None else model.model_dump(mode="json", by_alias=True)


def _change_environment(
    flag: Flag,
    environment: str,
    config: EnvironmentConfig,
    catalog: Catalog | None,
    payload_type: type[EnvironmentChangedPayload],
    **extra: Any,
) -> list[EventDraft]:
    """One event with ``config`` and its diff (``[]`` if unchanged); validated unless ``catalog`` is None."""
    before = flag.environments.get(environment)
    if config == before:
        return []
    if catalog is not None:
        ensure_valid(validate_environment(flag, environment, config, catalog))
    changes = diff(_json(before), _json(config))
    return [to_draft(payload_type(config=config, diff=tuple(changes), **extra), environment=environment)]


def _set_rollout(flag: Flag, command: SetRollout, catalog: Catalog) -> list[EventDraft]:
    config = _environment(flag, command.environment)
    if command.rule_id is None:
        index, old, path = None, config.default, "default"
    else:
        index = next((i for i, r in enumerate(config.rules) if r.id == command.rule_id), None)
        if index is None:
            raise InvalidCommand(
                f"environment {command.environment!r} has no rule {command.rule_id!r}",
                details=[_at("rule_id", "no rule with this id")],
            )
        old, path = config.rules[index].serve, f"rules[{index}].serve"
    bucket_by = command.bucket_by or (old.bucket_by if old else None)
    salt = command.salt if command.salt is not None else (old.salt if old else None)
    # A rollout imported from flagd keeps flagd's reading of the bucketing value while it buckets alike.
    same_bucketing = old is not None and (old.bucket_by, old.salt) == (bucket_by, salt)
    try:
        serve = Serve(
            rollout=command.rollout,
            bucket_by=bucket_by,
            salt=salt,
            flagd_bucketing=old.flagd_bucketing if old is not None and same_bucketing else None,
        )
    except ValidationError as e:
        raise InvalidConfiguration("invalid rollout", details=issues_from_validation_error(e, path)) from e
    if index is None:
        new_config = config.model_copy(update={"default": serve})
    else:
        rules = list(config.rules)
        rules[index] = rules[index].model_copy(update={"serve": serve})
        new_config = config.model_copy(update={"rules": tuple(rules)})
    return _change_environment(
        flag, command.environment, new_config, catalog, RolloutChangedPayload, rule_id=command.rule_id
    )


def _roll_back(flag: Flag, version: int, command: RollBackEnvironment, catalog: Catalog) -> list[EventDraft]:
    if command.to_version >= version:
        raise InvalidCommand(
            f"to_version {command.to_version} is not before the current version {version}",
            details=[_at("to_version", f"must be less than {version}")],
        )
    target = command.restored_config
    if target is None:
        target = _environment(flag, command.environment).model_copy(update={"enabled": False})
    return _change_environment(
        flag,
        command.environment,
        target,
        catalog if target.enabled else None,
        FlagRolledBackPayload,
        to_version=command.to_version,
        undone_versions=command.undone_versions,
        alert=command.alert,
    )


def _update_metadata(flag: Flag, command: UpdateFlagMetadata, catalog: Catalog) -> list[EventDraft]:
    wanted = {k: _to_json(v) for k, v in command.changed_fields().items()}
    try:
        updated = Flag.model_validate({**flag.model_dump(mode="json", by_alias=True), **wanted})
    except ValidationError as e:
        raise InvalidConfiguration("invalid flag metadata", details=issues_from_validation_error(e)) from e
    # Field by field, not from a dump: a dump leaves out empty ``metadata``.
    before = {k: _to_json(getattr(flag, k)) for k in wanted}
    after = {k: _to_json(getattr(updated, k)) for k in wanted}
    changed = {k: after[k] for k in sorted(wanted) if before[k] != after[k]}
    if not changed:
        return []
    if "variations" in changed:
        ensure_valid(validate_flag(updated, catalog), "the new variations break a configuration")
    changes = diff({k: before[k] for k in changed}, changed)
    return [to_draft(FlagMetadataUpdatedPayload(changes=changed, diff=tuple(changes)))]


def _to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _update_segment(segment: Segment, command: UpdateSegment, catalog: Catalog) -> list[EventDraft]:
    new = command.segment
    if new.key != command.segment_key:
        raise InvalidCommand(
            "a segment's key cannot change", details=[_at("segment.key", "must equal segment_key")]
        )
    if new.archived:
        raise InvalidCommand("archive a segment with ArchiveSegment", details=[_SEGMENT_NOT_ARCHIVED])
    if new == segment:
        return []
    ensure_valid(validate_segment(new, catalog), "invalid segment")
    changes = diff(_json(segment), _json(new))
    return [to_draft(SegmentUpdatedPayload(segment=new, diff=tuple(changes)))]
