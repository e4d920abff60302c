"""Fold parsed records in memory and write the outcome in bulk: the rebuild's fast path.

Only for a namespace that nothing else writes (the rebuild's shadow): there is no concurrent
writer, so the per-event compare-and-set of ``lua/apply.lua`` is replaced by a version check in
Python over states read once (MGET) and then kept in memory.

Events are folded as parsed JSON with :mod:`core.fastfold` (no pydantic per event: the log is
trusted here, and ``verify`` is what checks it); each stream's state is validated into its model
once per *flush*, when its state and documents are written. A flush is one MULTI/EXEC of a few
bulk commands (MSET of states and checkpoints, one HSET per document hash...). It happens when
``flush_streams`` streams or ``flush_events`` events are pending, and whenever the caller asks
(:meth:`ShadowFolder.flush`: the rebuild does before every "caught up?" check and before
reporting a gap).

The result is the same read model the Lua path builds — same states, documents, environment set
and checkpoints — except the revision counters, which grow once per flush instead of once per
event (they are never compared, and a switch bumps the live counters anyway). An environment
document written by several events of one flush is the flag's final slice with the version of
the last of them: the same bytes, since any later change to that slice writes it again (the
rules of :func:`projections.documents.plan_flag_apply`). No change notices are published: no
reader follows a shadow. Memory: the states of the streams seen (dropped after a flush once
there are more than ``cache_streams``), and the pending documents.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.envelope import SEGMENT_STREAM_PREFIX, Event, canonical_json
from core.errors import FlagstreamError
from core.events import EventType
from core.fastfold import (
    ENVIRONMENT_EVENT_TYPES,
    empty_flag_state,
    empty_segment_state,
    flag_state,
    fold_flag,
    fold_segment,
    segment_state,
)
from projections.deadletters import is_projected_stream
from projections.documents import encode_segment_doc, is_segment_stream, plan_flag_apply
from projections.errors import ApplyRejected, ReadModelUnavailable
from projections.keys import Keyspace

__all__ = ["BatchOutcome", "Gap", "ShadowFolder", "paused_gc"]

_CREATED = EventType.FLAG_CREATED.value
_SKIPPED = EventType.ROLLBACK_SKIPPED.value
_V = TypeVar("_V", str, int)
_CHUNK = 2_000  # keys or fields per bulk command


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC while parsing and folding a batch, and what survives it frozen afterwards.

    A fold allocates only acyclic dicts and lists, many of them kept (the states): collections
    in the middle, and later ones walking the kept states again, are pure cost (~25 % of the
    rebuild, measured). Survivors are moved to the permanent generation (``gc.freeze``): they
    are still freed by reference counting, only never scanned for cycles. The caller undoes the
    freeze (``gc.unfreeze()``) when its bulk work is over.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Gap:
    """The first record after a version gap: nothing from it on was folded."""

    offset: int
    fields: Mapping[str, Any]


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0  # records of streams the read model does not project
    gap: Gap | None = None


@dataclass(slots=True)
class _Pending:
    events: int = 0
    changed: set[str] = field(default_factory=set)
    docs: dict[str, dict[str, int | None]] = field(default_factory=dict)  # stream -> env -> version
    checkpoints: dict[str, int] = field(default_factory=dict)


class ShadowFolder:
    """Folds records into ``keys``'s namespace: ``await fold(...)`` per batch, ``await flush()`` to write."""

    def __init__(self, client: Redis, keys: Keyspace, group: str, *, flush_streams: int = 20_000,
                 flush_events: int = 500_000, cache_streams: int = 100_000) -> None:
        self._client, self._keys, self._group = client, keys, group
        self._flush_streams, self._flush_events = flush_streams, flush_events
        self._cache_streams = cache_streams
        self._states: dict[str, dict[str, Any]] = {}
        self._positions: dict[str, int] = {}  # checkpoint key -> next offset, flushed or not
        self._pending = _Pending()

    def position(self, checkpoint: str) -> int | None:
        """The next offset of a checkpoint key after everything folded (pending writes included)."""
        return self._positions.get(checkpoint)

    async def fold(self, topic: str, partition: int, records: Sequence[tuple[int, Mapping[str, Any]]]
                   ) -> BatchOutcome:
        """Fold ``(offset, parsed envelope)`` records of one partition, in log order; stop at a gap."""
        await self._load_states({fields["flag_key"] for _, fields in records})
        checkpoint = self._keys.checkpoint(self._group, topic, partition)
        outcome = BatchOutcome()
        pending, states, fold_one = self._pending, self._states, self._fold_one
        mark_changed = pending.changed.add
        applied = duplicates = skipped = 0
        position: int | None = None
        for offset, fields in records:
            stream, version = fields["flag_key"], fields["version"]
            state = states.get(stream)
            if state is None:  # incident:, ops:, alert: streams: not projected, checkpoint moves on
                skipped += 1
            elif version <= state["version"]:
                duplicates += 1
            elif version > state["version"] + 1:
                outcome.gap = Gap(offset, fields)
                break
            else:
                states[stream] = fold_one(stream, state, fields)
                mark_changed(stream)
                applied += 1
            position = offset + 1
        outcome.applied, outcome.duplicates, outcome.skipped = applied, duplicates, skipped
        pending.events += applied + duplicates + skipped
        if position is not None:
            pending.checkpoints[checkpoint] = self._positions[checkpoint] = position
        if len(pending.changed) >= self._flush_streams or pending.events >= self._flush_events:
            await self.flush()
        return outcome

    async def flush(self) -> None:
        """Write every pending state, document and checkpoint in one MULTI/EXEC."""
        pending, self._pending = self._pending, _Pending()
        if pending.events == 0 and not pending.checkpoints:
            return
        try:
            await self._write(pending)
        except BaseException:
            self._states.clear()  # what is in memory may be ahead of what is written
            raise
        if len(self._states) > self._cache_streams:
            self._states.clear()

    def _fold_one(self, stream: str, state: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        try:
            if stream.startswith(SEGMENT_STREAM_PREFIX):
                return fold_segment(state, fields)
            after = fold_flag(state, fields)
            self._touch(stream, state, after, fields)
            return after
        except (FlagstreamError, ValueError, KeyError, TypeError) as e:
            raise ApplyRejected(
                f"cannot apply {fields.get('type')} v{fields.get('version')} of {stream!r}: {e}") from e

    def _touch(self, stream: str, before: dict[str, Any], after: dict[str, Any],
               fields: Mapping[str, Any]) -> None:
        """Record which environment documents ``fields`` writes (or deletes), as ``plan_flag_apply``."""
        docs = self._pending.docs.setdefault(stream, {})
        kind, version, fast = fields["type"], fields["version"], fields["schema_version"] == 1
        if fast and kind in ENVIRONMENT_EVENT_TYPES:
            docs[fields["environment"]] = version  # only that environment's config can change
        elif fast and kind == _CREATED:
            docs.update(dict.fromkeys(after["flag"]["environments"], version))
        elif kind == _SKIPPED and fields["schema_version"] == 2:
            if fields["environment"] in after["flag"]["environments"]:
                docs[fields["environment"]] = version
        else:  # rare events (metadata, archive, restore, older schemas): the planner's own rules
            event = Event.model_validate(fields)
            plan = plan_flag_apply(self._keys, flag_state(before), flag_state(after), event)
            for write in plan.writes:
                docs[_environment(write.environment)] = version if write.doc is not None else None

    async def _load_states(self, streams: Iterable[str]) -> None:
        missing = sorted(s for s in streams if s not in self._states and is_projected_stream(s))
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            try:
                raws = await self._client.mget([self._keys.state(s) for s in chunk])
            except (RedisError, OSError) as e:
                raise ReadModelUnavailable("redis unavailable reading states") from e
            for stream, raw in zip(chunk, raws, strict=True):
                self._states[stream] = _empty_state(stream) if raw is None else orjson.loads(raw)

    async def _write(self, pending: _Pending) -> None:
        states: dict[str, str] = {}
        hashes: dict[str, dict[str, str]] = {}
        deletes: dict[str, list[str]] = {}
        revs: set[str] = set()
        environments: set[str] = set()
        keys = self._keys
        for stream in pending.changed:
            folded = self._states[stream]
            states[keys.head(stream)] = f"{folded['version']}:{folded.get('last_hash', '')}"
            if is_segment_stream(stream):
                seg = segment_state(folded)
                states[keys.state(stream)] = seg.model_dump_json()
                revs.add(keys.segments_rev)
                if seg.segment is None:
                    deletes.setdefault(keys.segments, []).append(seg.key)
                else:
                    doc = encode_segment_doc(seg.segment, seg.version)
                    hashes.setdefault(keys.segments, {})[seg.key] = doc
                continue
            flag = flag_state(folded)
            states[keys.state(stream)] = flag.model_dump_json()
            dumped = None if flag.flag is None else flag.flag.model_dump(mode="json", by_alias=True)
            for env, version in pending.docs.get(stream, {}).items():
                revs.add(keys.env_rev(env))
                environments.add(env)
                if version is None or dumped is None:
                    deletes.setdefault(keys.env_flags(env), []).append(stream)
                else:
                    doc = _env_doc(dumped, env, version)
                    hashes.setdefault(keys.env_flags(env), {})[stream] = doc
        await _execute(self._client, keys, states, hashes, deletes, revs, environments, pending.checkpoints)


def _env_doc(dumped_flag: dict[str, Any], environment: str, version: int) -> str:
    """``encode_env_doc`` from the flag's dump (taken once for all its environments): same text."""
    sliced = {**dumped_flag, "environments": {environment: dumped_flag["environments"][environment]}}
    return canonical_json({"version": version, "flag": sliced})


def _environment(environment: str | None) -> str:
    if environment is None:
        raise ValueError("a flag document write without an environment")
    return environment


def _empty_state(stream: str) -> dict[str, Any]:
    if is_segment_stream(stream):
        return empty_segment_state(stream.split(":", 1)[1])
    return empty_flag_state(stream)


def _chunks(items: Mapping[str, _V]) -> Iterable[dict[str, _V]]:
    ordered = list(items.items())
    for start in range(0, len(ordered), _CHUNK):
        yield dict(ordered[start : start + _CHUNK])


async def _execute(client: Redis, keys: Keyspace, states: dict[str, str], hashes: dict[str, dict[str, str]],
                   deletes: dict[str, list[str]], revs: set[str], environments: set[str],
                   checkpoints: dict[str, int]) -> None:
    try:
        async with client.pipeline(transaction=True) as pipe:
            for chunk in _chunks(states):
                pipe.mset(chunk)
            for hash_key, docs in hashes.items():
                for chunk in _chunks(docs):
                    pipe.hset(hash_key, items=[part for pair in chunk.items() for part in pair])
            for hash_key, names in deletes.items():
                pipe.hdel(hash_key, *names)
            for rev in revs:
                pipe.incr(rev)
            if environments:
                pipe.sadd(keys.environments, *environments)
            if checkpoints:
                pipe.mset(checkpoints)
            await pipe.execute()
    except (RedisError, OSError) as e:
        raise ReadModelUnavailable("redis unavailable writing a rebuild batch") from e
