"""Fast fold of parsed events into plain-dict states: replay of trusted history without pydantic.

:func:`core.evolve.evolve` validates every event's envelope and payload into models, then
builds a new frozen :class:`~core.state.FlagState`: right for the write side, but most of the
cost of a replay of a million hash-verified events. Here an event is the dict of its parsed
canonical JSON (``Event.to_json()`` read back with any JSON parser) and a state is the dict of
``FlagState.model_dump(mode="json")`` (or of ``SegmentState``); folding copies references, it
validates nothing. Validate once per stream, at the end, with :func:`flag_state` /
:func:`segment_state` (equal to what :func:`~core.evolve.replay` returns for the same events;
the property tests in ``tests/unit/core/test_fastfold.py`` hold this).

The semantics are :func:`~core.evolve.evolve`'s, for the shapes the fast path knows:
``FlagCreated`` carries the whole flag; environment-changing events carry the full resulting
``config`` of the envelope's ``environment``; ``FlagMetadataUpdated`` carries ``changes``;
archive / restore flip ``archived``; ``RollbackSkipped`` only moves the version; segments are
replaced whole or archived. Anything else (an older schema version that needs upcasting, an
unknown type) goes through ``evolve`` itself, so errors are the core's: ``EventOutOfOrder``,
``MalformedEvent``, ``UnknownEventType``, ``UnsupportedSchemaVersion``.

What is *not* checked on the fast path (trusted history only): the payload's fields beyond
those read, and the model constraints of the flag (checked by :func:`flag_state` at the end).
Inputs are never mutated; states share sub-dicts with the events they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.envelope import GENESIS_HASH, SEGMENT_STREAM_PREFIX, Event
from core.errors import EventOutOfOrder, MalformedEvent
from core.events import METADATA_FIELDS, EventType
from core.evolve import evolve, evolve_segment
from core.state import FlagState, SegmentState

__all__ = [
    "ENVIRONMENT_EVENT_TYPES",
    "FLAG_LEVEL_EVENT_TYPES",
    "empty_flag_state",
    "empty_segment_state",
    "flag_state",
    "fold_flag",
    "fold_flag_events",
    "fold_segment",
    "fold_segment_events",
    "segment_state",
]

State = dict[str, Any]

ENVIRONMENT_EVENT_TYPES = frozenset({
    EventType.ENVIRONMENT_CONFIGURED.value, EventType.FLAG_ENABLED.value, EventType.FLAG_DISABLED.value,
    EventType.ROLLOUT_CHANGED.value, EventType.RULES_CHANGED.value, EventType.TARGETS_CHANGED.value,
    EventType.FLAG_ROLLED_BACK.value,
})
"""Events that set one environment's whole configuration (``payload["config"]``)."""

FLAG_LEVEL_EVENT_TYPES = frozenset({
    EventType.FLAG_CREATED.value, EventType.FLAG_METADATA_UPDATED.value, EventType.FLAG_ARCHIVED.value,
    EventType.FLAG_RESTORED.value,
})
"""Events that change the flag as a whole (every environment's document changes with them)."""

_CREATED = EventType.FLAG_CREATED.value
_METADATA = EventType.FLAG_METADATA_UPDATED.value
_ARCHIVED = EventType.FLAG_ARCHIVED.value
_RESTORED = EventType.FLAG_RESTORED.value
_SKIPPED = EventType.ROLLBACK_SKIPPED.value
_SEGMENT_CREATED = EventType.SEGMENT_CREATED.value
_SEGMENT_UPDATED = EventType.SEGMENT_UPDATED.value
_SEGMENT_ARCHIVED = EventType.SEGMENT_ARCHIVED.value
# The (type, schema_version) pairs folded here; every other event goes through ``evolve``.
_FAST_FLAG = frozenset({(t, 1) for t in ENVIRONMENT_EVENT_TYPES | FLAG_LEVEL_EVENT_TYPES} | {(_SKIPPED, 2)})
_FAST_SEGMENT = frozenset({(_SEGMENT_CREATED, 1), (_SEGMENT_UPDATED, 1), (_SEGMENT_ARCHIVED, 1)})


def empty_flag_state(key: str) -> State:
    """The state of a flag that does not exist yet (``FlagState(key=key)`` as JSON)."""
    return {"key": key, "version": 0, "last_hash": GENESIS_HASH, "flag": None, "env_versions": {},
            "updated_at": None}


def empty_segment_state(key: str) -> State:
    """The state of a segment that does not exist yet (``SegmentState(key=key)`` as JSON)."""
    return {"key": key, "version": 0, "last_hash": GENESIS_HASH, "segment": None, "updated_at": None}


def fold_flag(state: State, event: Mapping[str, Any]) -> State:
    """The flag state after ``event`` (a parsed envelope, the next event of the flag's stream)."""
    kind, version = event["type"], event["version"]
    _check_order(state["key"], state["version"], event)
    if (kind, event["schema_version"]) not in _FAST_FLAG:
        return _evolve_flag(state, event)
    flag: dict[str, Any] | None = state["flag"]
    env_versions: dict[str, int] = state["env_versions"]
    if kind == _CREATED:
        if flag is not None:
            raise MalformedEvent(f"{kind} for flag {state['key']!r}, which already exists")
        flag = _payload_item(event, "flag")
        env_versions = dict.fromkeys(flag["environments"], version)
    elif flag is None:
        raise MalformedEvent(f"{kind} for {state['key']!r}, which does not exist")
    elif kind in ENVIRONMENT_EVENT_TYPES:
        environment = event["environment"]
        if environment is None:
            raise MalformedEvent(f"{kind} v{version} has no environment")
        try:
            config = event["payload"]["config"]
        except (KeyError, TypeError) as e:
            raise MalformedEvent(f"{kind} v{version} has no 'config' in its payload") from e
        flag = {**flag, "environments": {**flag["environments"], environment: config}}
        env_versions = {**env_versions, environment: version}
    elif kind == _METADATA:
        changes = _payload_item(event, "changes")
        if not METADATA_FIELDS.issuperset(changes):
            raise MalformedEvent(f"{kind} v{version} changes fields that are not metadata")
        flag = {**flag, **changes}
    elif kind == _ARCHIVED:
        flag = {**flag, "archived": True}
    elif kind == _RESTORED:
        flag = {**flag, "archived": False}
    return {"key": state["key"], "version": version, "last_hash": event["hash"], "flag": flag,
            "env_versions": env_versions, "updated_at": event["occurred_at"]}


def fold_segment(state: State, event: Mapping[str, Any]) -> State:
    """The segment state after ``event`` (the next event of stream ``segment:<key>``)."""
    kind = event["type"]
    _check_order(SEGMENT_STREAM_PREFIX + state["key"], state["version"], event)
    if (kind, event["schema_version"]) not in _FAST_SEGMENT:
        return _evolve_segment(state, event)
    segment: dict[str, Any] | None = state["segment"]
    if kind == _SEGMENT_CREATED:
        if segment is not None:
            raise MalformedEvent(f"{kind} for segment {state['key']!r}, which already exists")
        segment = _payload_item(event, "segment")
    elif segment is None:
        raise MalformedEvent(f"{kind} for {state['key']!r}, which does not exist")
    elif kind == _SEGMENT_UPDATED:
        segment = _payload_item(event, "segment")
    else:
        segment = {**segment, "archived": True}
    return {"key": state["key"], "version": event["version"], "last_hash": event["hash"],
            "segment": segment, "updated_at": event["occurred_at"]}


def fold_flag_events(events: Iterable[Mapping[str, Any]], key: str) -> State:
    """A flag's state (as JSON) from its parsed events, in version order from 1."""
    state = empty_flag_state(key)
    for event in events:
        state = fold_flag(state, event)
    return state


def fold_segment_events(events: Iterable[Mapping[str, Any]], key: str) -> State:
    """A segment's state (as JSON) from its parsed events, in version order from 1."""
    state = empty_segment_state(key)
    for event in events:
        state = fold_segment(state, event)
    return state


def flag_state(state: Mapping[str, Any]) -> FlagState:
    """The validated :class:`FlagState` of a folded state (the one validation of the replay)."""
    return FlagState.model_validate(state)


def segment_state(state: Mapping[str, Any]) -> SegmentState:
    """The validated :class:`SegmentState` of a folded segment state."""
    return SegmentState.model_validate(state)


def _evolve_flag(state: State, event: Mapping[str, Any]) -> State:
    """The slow, general path: the core's ``evolve`` on validated models, back to JSON."""
    result = evolve(flag_state(state), Event.model_validate(event))
    return result.model_dump(mode="json")


def _evolve_segment(state: State, event: Mapping[str, Any]) -> State:
    result = evolve_segment(segment_state(state), Event.model_validate(event))
    return result.model_dump(mode="json")


def _check_order(stream: str, version: int, event: Mapping[str, Any]) -> None:
    if event["flag_key"] != stream:
        raise MalformedEvent(f"event of stream {event['flag_key']!r} applied to stream {stream!r}")
    if event["version"] != version + 1:
        raise EventOutOfOrder(f"stream {stream!r} is at version {version}; got version {event['version']}")


def _payload_item(event: Mapping[str, Any], name: str) -> Any:
    payload = event["payload"]
    if not isinstance(payload, dict) or name not in payload:
        raise MalformedEvent(f"{event['type']} v{event['version']} has no {name!r} in its payload")
    return payload[name]
