"""``evolve``: fold one sealed event into a stream's state; ``replay``: fold a whole stream.

Total and deterministic: the result depends only on the state and the event. An event that
cannot be applied raises an :class:`~core.errors.UnreadableEvent` subclass — never a silent
skip: ``UnknownEventType`` / ``UnsupportedSchemaVersion`` / ``MalformedEvent`` (payload does
not fit, wrong stream, a change to a flag that does not exist...) and ``EventOutOfOrder``
(the event is not version ``state.version + 1``).

Every event sets ``version``, ``last_hash`` (= the event's ``hash``) and ``updated_at``
(= ``occurred_at``). An event that changes an environment also sets ``env_versions[env]``;
``FlagCreated`` sets it for every environment the new flag has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from pydantic import ValidationError

from core.envelope import SEGMENT_STREAM_PREFIX, Event
from core.errors import EventOutOfOrder, MalformedEvent
from core.events import (
    EnvironmentChangedPayload,
    FlagArchivedPayload,
    FlagCreatedPayload,
    FlagMetadataUpdatedPayload,
    FlagRestoredPayload,
    Payload,
    RollbackSkippedPayload,
    SegmentArchivedPayload,
    SegmentCreatedPayload,
    SegmentUpdatedPayload,
    read_payload,
)
from core.model import EnvironmentConfig, Flag
from core.state import FlagState, SegmentState

__all__ = ["config_at", "environment_changes_after", "evolve", "evolve_segment", "replay", "replay_segment"]

_T = TypeVar("_T")


def evolve(state: FlagState, event: Event) -> FlagState:
    """The flag state after ``event`` (the next event of the flag's stream)."""
    _check_order(state.key, state.version, event)
    payload = read_payload(event)
    flag = state.flag
    env_versions = state.env_versions
    match payload:
        case FlagCreatedPayload():
            if flag is not None:
                raise MalformedEvent(f"{event.type} for flag {state.key!r}, which already exists")
            flag = payload.flag
            env_versions = dict.fromkeys(flag.environments, event.version)
        case _:
            flag = _apply_to_flag(_require(flag, state.key, event), payload, event)
            if isinstance(payload, EnvironmentChangedPayload):
                env_versions = {**env_versions, _environment_of(event): event.version}
    return FlagState(key=state.key, version=event.version, last_hash=event.hash, flag=flag,
                     env_versions=env_versions, updated_at=event.occurred_at)


def _apply_to_flag(flag: Flag, payload: Payload, event: Event) -> Flag:
    match payload:
        case EnvironmentChangedPayload():
            return flag.model_copy(
                update={"environments": {**flag.environments, _environment_of(event): payload.config}})
        case FlagMetadataUpdatedPayload():
            try:
                return Flag.model_validate({**flag.model_dump(mode="json", by_alias=True), **payload.changes})
            except ValidationError as e:
                raise MalformedEvent(f"{event.type} v{event.version} cannot apply to {flag.key!r}") from e
        case FlagArchivedPayload():
            return flag.model_copy(update={"archived": True})
        case FlagRestoredPayload():
            return flag.model_copy(update={"archived": False})
        case RollbackSkippedPayload():
            return flag
    raise MalformedEvent(f"{event.type} is not an event of a flag stream")


def evolve_segment(state: SegmentState, event: Event) -> SegmentState:
    """The segment state after ``event`` (the next event of stream ``segment:<key>``)."""
    _check_order(state.stream, state.version, event)
    payload = read_payload(event)
    match payload:
        case SegmentCreatedPayload():
            if state.segment is not None:
                raise MalformedEvent(f"{event.type} for segment {state.key!r}, which already exists")
            segment = payload.segment
        case SegmentUpdatedPayload():
            _require(state.segment, state.key, event)
            segment = payload.segment
        case SegmentArchivedPayload():
            segment = _require(state.segment, state.key, event).model_copy(update={"archived": True})
        case _:
            raise MalformedEvent(f"{event.type} is not an event of a segment stream")
    return SegmentState(key=state.key, version=event.version, last_hash=event.hash, segment=segment,
                        updated_at=event.occurred_at)


def replay(events: Iterable[Event], key: str | None = None) -> FlagState:
    """A flag's state from its events, in version order from 1 (``key`` is needed if there may be none)."""
    state: FlagState | None = None if key is None else FlagState(key=key)
    for event in events:
        state = evolve(state or FlagState(key=event.flag_key), event)
    if state is None:
        raise ValueError("replay of no events needs the flag key")
    return state


def replay_segment(events: Iterable[Event], key: str | None = None) -> SegmentState:
    """A segment's state from its events (stream ``segment:<key>``), in version order from 1."""
    state: SegmentState | None = None if key is None else SegmentState(key=key)
    for event in events:
        state = evolve_segment(state or SegmentState(key=event.flag_key.removeprefix(SEGMENT_STREAM_PREFIX)),
                               event)
    if state is None:
        raise ValueError("replay of no events needs the segment key")
    return state


def config_at(events: Iterable[Event], version: int, environment: str) -> EnvironmentConfig | None:
    """The configuration of ``environment`` in force at ``version`` (``None``: absent then).

    What a rollback restores: the application service passes it to ``RollBackEnvironment``.
    ``events`` are the flag's events in version order from 1; later ones are ignored.
    """
    events = [e for e in events if e.version <= version]
    if not events:
        return None
    flag = replay(events).flag
    return flag.environments.get(environment) if flag is not None else None


def environment_changes_after(events: Sequence[Event], version: int, environment: str) -> tuple[int, ...]:
    """Versions after ``version`` that changed ``environment`` (what a rollback to ``version`` undoes)."""
    return tuple(e.version for e in events if e.version > version and _changes(e, environment))


def _changes(event: Event, environment: str) -> bool:
    payload = read_payload(event)
    if isinstance(payload, FlagCreatedPayload):
        return environment in payload.flag.environments
    return isinstance(payload, EnvironmentChangedPayload) and event.environment == environment


def _check_order(stream: str, version: int, event: Event) -> None:
    if event.flag_key != stream:
        raise MalformedEvent(f"event of stream {event.flag_key!r} applied to stream {stream!r}")
    if event.version != version + 1:
        raise EventOutOfOrder(f"stream {stream!r} is at version {version}; got version {event.version}")


def _require(value: _T | None, key: str, event: Event) -> _T:
    if value is None:
        raise MalformedEvent(f"{event.type} for {key!r}, which does not exist")
    return value


def _environment_of(event: Event) -> str:
    if event.environment is None:
        raise MalformedEvent(f"{event.type} v{event.version} has no environment")
    return event.environment
