"""What one event changes in the read model: pure planning, no I/O.

Given a stream's state before and after an event, :func:`plan_flag_apply` /
:func:`plan_segment_apply` say which hash fields to write, and with which documents.

Rules (see docs/read-side.md):
- an environment document is the flag with only that environment, at the version of the event
  that last changed it: ``{"version": n, "flag": {...}}``;
- an event *touches* an environment when the document of that environment changes, or when the
  event names that environment (so ``?wait=projected`` sees the version even for an event that
  changes no configuration, such as ``RollbackSkipped``); flag-level events (created, metadata,
  archive, restore) change the document of every environment of the flag;
- an archived flag keeps its documents, marked ``"archived": true`` inside the flag; evaluation
  answers ``FLAG_NOT_FOUND``-like results for it and ``evaluate_all`` leaves it out; a restore
  brings it back without a rebuild;
- an environment removed from a flag (or a flag that disappears) has its field deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.envelope import SEGMENT_STREAM_PREFIX, Event, canonical_json
from core.model import Flag, Segment
from core.state import FlagState, SegmentState
from projections.keys import Keyspace

__all__ = [
    "ApplyPlan",
    "FieldWrite",
    "decode_env_doc",
    "decode_segment_doc",
    "encode_env_doc",
    "encode_segment_doc",
    "environment_slice",
    "is_segment_stream",
    "parse_state",
    "plan_flag_apply",
    "plan_noop",
    "plan_segment_apply",
]


@dataclass(frozen=True, slots=True)
class FieldWrite:
    """One hash field to set (``doc``) or delete (``doc is None``), then announce."""

    hash_key: str
    rev_key: str
    channel: str
    field: str
    doc: str | None
    environment: str | None  # None for the segments hash
    notice_field: str  # "flag_key" or "segment_key"


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    stream_key: str
    version: int
    state_json: str
    writes: tuple[FieldWrite, ...]
    prev_hash: str = ""  # the event's prev_hash: the script refuses it unless the stored hash matches
    hash: str = ""  # the event's hash, stored in the stream's head ("": unknown, e.g. a bridge)


def is_segment_stream(stream_key: str) -> bool:
    return stream_key.startswith(SEGMENT_STREAM_PREFIX)


def parse_state(stream_key: str, raw: str | bytes | None) -> FlagState | SegmentState:
    """The stored state of a stream (``raw`` from ``fs:state:{stream}``), or its empty state."""
    if is_segment_stream(stream_key):
        if raw is None:
            return SegmentState(key=stream_key.removeprefix(SEGMENT_STREAM_PREFIX))
        return SegmentState.model_validate_json(raw)
    return FlagState(key=stream_key) if raw is None else FlagState.model_validate_json(raw)


def environment_slice(flag: Flag, environment: str) -> Flag:
    """The flag with only one environment's configuration."""
    config = flag.environments[environment]
    return flag.model_copy(update={"environments": {environment: config}})


def encode_env_doc(flag: Flag, environment: str, version: int) -> str:
    sliced = environment_slice(flag, environment)
    return canonical_json({"version": version, "flag": sliced.model_dump(mode="json", by_alias=True)})


def decode_env_doc(raw: str | bytes) -> tuple[int, Flag]:
    data: dict[str, Any] = _loads(raw)
    return int(data["version"]), Flag.model_validate(data["flag"])


def encode_segment_doc(segment: Segment, version: int) -> str:
    return canonical_json({"version": version, "segment": segment.model_dump(mode="json", by_alias=True)})


def decode_segment_doc(raw: str | bytes) -> tuple[int, Segment]:
    data: dict[str, Any] = _loads(raw)
    return int(data["version"]), Segment.model_validate(data["segment"])


def _loads(raw: str | bytes) -> dict[str, Any]:
    import json

    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("a read-model document must be a JSON object")
    return value


def plan_flag_apply(keys: Keyspace, before: FlagState, after: FlagState, event: Event) -> ApplyPlan:
    """The writes taking the read model from ``before`` to ``after = evolve(before, event)``."""
    old_envs = before.flag.environments if before.flag is not None else {}
    new_envs = after.flag.environments if after.flag is not None else {}
    flag_level_changed = not _same_flag_level(before.flag, after.flag)
    writes: list[FieldWrite] = []
    for env in sorted(set(old_envs) | set(new_envs)):
        if env not in new_envs:
            writes.append(_env_write(keys, after.key, env, None))
            continue
        assert after.flag is not None
        unchanged = not flag_level_changed and old_envs.get(env) == new_envs[env]
        if unchanged and event.environment != env:
            continue
        writes.append(_env_write(keys, after.key, env, encode_env_doc(after.flag, env, event.version)))
    return ApplyPlan(
        after.key, event.version, after.model_dump_json(), tuple(writes), event.prev_hash, event.hash
    )


def plan_segment_apply(keys: Keyspace, after: SegmentState, event: Event) -> ApplyPlan:
    doc = encode_segment_doc(after.segment, event.version) if after.segment is not None else None
    write = FieldWrite(
        keys.segments, keys.segments_rev, keys.segments_channel, after.key, doc, None, "segment_key"
    )
    return ApplyPlan(
        after.stream, event.version, after.model_dump_json(), (write,), event.prev_hash, event.hash
    )


def plan_noop(stream_key: str, version: int) -> ApplyPlan:
    """A plan that only lets the script decide duplicate / gap (and move the checkpoint)."""
    return ApplyPlan(stream_key, version, "", ())


_FLAG_LEVEL_FIELDS = tuple(name for name in Flag.model_fields if name != "environments")


def _same_flag_level(before: Flag | None, after: Flag | None) -> bool:
    """Whether everything but the environments (name, variations, archived...) is unchanged."""
    if before is None or after is None:
        return before is after
    return all(getattr(before, name) == getattr(after, name) for name in _FLAG_LEVEL_FIELDS)


def _env_write(keys: Keyspace, flag_key: str, env: str, doc: str | None) -> FieldWrite:
    return FieldWrite(
        keys.env_flags(env), keys.env_rev(env), keys.env_channel(env), flag_key, doc, env, "flag_key"
    )
