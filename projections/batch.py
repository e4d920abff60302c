"""Fold a batch of events in memory and write the outcome in one MULTI/EXEC: the rebuild's fast path.

Only for a namespace that nothing else writes (the rebuild's shadow): there is no concurrent
writer, so the per-event compare-and-set of ``lua/apply.lua`` is replaced by a version check in
Python over states read once per batch (MGET). The result is the same read model the Lua path
builds — same states, documents, environment set and checkpoints — except the revision counters,
which grow once per batch instead of once per event (they are never compared, and a switch bumps
the live counters anyway). No change notices are published: no reader follows a shadow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.envelope import Event
from core.errors import FlagstreamError
from core.evolve import evolve, evolve_segment
from core.state import FlagState, SegmentState
from projections.documents import ApplyPlan, parse_state, plan_flag_apply, plan_segment_apply
from projections.errors import ApplyRejected, ReadModelUnavailable
from projections.keys import Keyspace
from projections.readmodel import ApplyOutcome

__all__ = ["BatchOutcome", "BatchRecord", "fold_and_write"]

State = FlagState | SegmentState


@dataclass(frozen=True, slots=True)
class BatchRecord:
    topic: str
    partition: int
    offset: int
    event: Event


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    gap: BatchRecord | None = None  # the first record after a version gap (nothing from it on is written)


@dataclass(slots=True)
class _Pending:
    states: dict[str, State] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    docs: dict[tuple[str, str], str | None] = field(default_factory=dict)
    revs: set[str] = field(default_factory=set)
    environments: set[str] = field(default_factory=set)
    checkpoints: dict[str, int] = field(default_factory=dict)


async def fold_and_write(
    client: Redis, keys: Keyspace, group: str, records: list[BatchRecord]
) -> BatchOutcome:
    """Apply ``records`` (in log order) to ``keys``'s namespace; stop at the first version gap."""
    pending = _Pending(states=await _load_states(client, keys, {r.event.flag_key for r in records}))
    outcome = BatchOutcome()
    for record in records:
        result = _fold(keys, pending, record.event)
        if result is ApplyOutcome.GAP:
            outcome.gap = record
            break
        if result is ApplyOutcome.APPLIED:
            outcome.applied += 1
        else:
            outcome.duplicates += 1
        pending.checkpoints[keys.checkpoint(group, record.topic, record.partition)] = record.offset + 1
    await _write(client, keys, pending)
    return outcome


def _fold(keys: Keyspace, pending: _Pending, event: Event) -> ApplyOutcome:
    stream = event.flag_key
    state = pending.states[stream]
    if event.version <= state.version:
        return ApplyOutcome.DUPLICATE
    if event.version > state.version + 1:
        return ApplyOutcome.GAP
    try:
        plan: ApplyPlan
        if isinstance(state, SegmentState):
            new_segment = evolve_segment(state, event)
            plan, pending.states[stream] = plan_segment_apply(keys, new_segment, event), new_segment
        else:
            new_flag = evolve(state, event)
            plan, pending.states[stream] = plan_flag_apply(keys, state, new_flag, event), new_flag
    except (FlagstreamError, ValueError) as e:
        raise ApplyRejected(f"cannot apply {event.type} v{event.version} of {stream!r}: {e}") from e
    pending.changed.add(stream)
    for write in plan.writes:
        pending.docs[(write.hash_key, write.field)] = write.doc
        pending.revs.add(write.rev_key)
        if write.environment is not None:
            pending.environments.add(write.environment)
    return ApplyOutcome.APPLIED


async def _load_states(client: Redis, keys: Keyspace, streams: set[str]) -> dict[str, State]:
    ordered = sorted(streams)
    try:
        raws = await client.mget([keys.state(s) for s in ordered]) if ordered else []
    except (RedisError, OSError) as e:
        raise ReadModelUnavailable("redis unavailable reading states") from e
    return {stream: parse_state(stream, raw) for stream, raw in zip(ordered, raws, strict=True)}


async def _write(client: Redis, keys: Keyspace, pending: _Pending) -> None:
    try:
        async with client.pipeline(transaction=True) as pipe:
            for stream in pending.changed:
                pipe.set(keys.state(stream), pending.states[stream].model_dump_json())
            for (hash_key, name), doc in pending.docs.items():
                if doc is None:
                    pipe.hdel(hash_key, name)
                else:
                    pipe.hset(hash_key, name, doc)
            for rev in pending.revs:
                pipe.incr(rev)
            if pending.environments:
                pipe.sadd(keys.environments, *pending.environments)
            for checkpoint, value in pending.checkpoints.items():
                pipe.set(checkpoint, value)
            await pipe.execute()
    except (RedisError, OSError) as e:
        raise ReadModelUnavailable("redis unavailable writing a rebuild batch") from e
