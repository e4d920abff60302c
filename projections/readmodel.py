"""The Redis read-model adapter: apply one event atomically (Lua compare-and-set), read checkpoints.

Python folds the event into the stored state (``core.evolve``); ``lua/apply.lua`` writes the new
state, the environment documents, the revision counters, the change notices and the projector
checkpoint in one atomic step, only if the stored version is still the one the event follows.
:meth:`RedisReadModel.apply_many` runs many such scripts, planned ahead, in one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.envelope import Event
from core.errors import FlagstreamError
from core.evolve import evolve, evolve_segment
from core.state import FlagState, SegmentState
from projections.connection import require_text_client
from projections.documents import ApplyPlan, parse_state, plan_flag_apply, plan_noop, plan_segment_apply
from projections.errors import ApplyRejected, ReadModelUnavailable
from projections.keys import Keyspace

__all__ = ["ApplyOutcome", "ApplyResult", "Checkpoint", "RedisReadModel", "load_script"]


State = FlagState | SegmentState
T = TypeVar("T")
_Planned = tuple[
    int, "ApplyOutcome", ApplyPlan, State | None
]  # item index, expected outcome, plan, state after


class ApplyOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # stored version >= event version: nothing but the checkpoint moved
    GAP = "gap"  # stored version < event version - 1: nothing changed, not even the checkpoint
    BEHIND = "behind"  # the stored checkpoint is below the floor: the read model lost data
    CHAIN = "chain"  # the next version, but its prev_hash is not the stored hash: nothing changed
    EPOCH = "epoch"  # the checkpoint belongs to another log epoch: nothing changed


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    stored_version: int  # the stream's version before this call
    environments: tuple[str, ...] = ()  # environments whose documents changed
    state: State | None = None  # the stream's state after the event, when applied


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the event came from: the checkpoint key is set to ``offset + 1`` with the change."""

    group: str
    topic: str
    partition: int
    offset: int
    floor: int | None = None  # the checkpoint the caller believes is stored (None: no check)
    epoch: int | None = None  # the record's log epoch; the script refuses another one (None: no check)


def load_script(name: str) -> str:
    return resources.files("projections").joinpath("lua", name).read_text(encoding="utf-8")


_RETRIES_ON_RACE = 3
_RESET_EPOCH = """
local stored = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local epoch = tonumber(ARGV[1])
if stored < epoch then
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[1], 0)
  return epoch
end
return stored
"""


class RedisReadModel:
    """One namespace of the read model, written event by event."""

    def __init__(self, client: Redis, keys: Keyspace | None = None) -> None:
        self._client = require_text_client(client)
        self.keys = keys or Keyspace()
        self._apply = client.register_script(load_script("apply.lua"))
        self._reset_epoch = client.register_script(_RESET_EPOCH)
        self._known: dict[str, State] = {}

    async def load_flag_state(self, flag_key: str) -> FlagState:
        state = parse_state(flag_key, await self._get(self.keys.state(flag_key)))
        assert isinstance(state, FlagState)
        return state

    async def load_segment_state(self, stream_key: str) -> SegmentState:
        state = parse_state(stream_key, await self._get(self.keys.state(stream_key)))
        assert isinstance(state, SegmentState)
        return state

    async def load_states(self, stream_keys: Iterable[str]) -> dict[str, State]:
        """Several streams' states in one round trip (MGET)."""
        ordered = sorted(set(stream_keys))
        if not ordered:
            return {}
        try:
            raws = await self._client.mget([self.keys.state(s) for s in ordered])
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading states") from e
        return {stream: parse_state(stream, raw) for stream, raw in zip(ordered, raws, strict=True)}

    async def prime_states(self, stream_keys: Iterable[str]) -> None:
        """Read several streams' states in one round trip for the next :meth:`apply` calls.

        The primed state of a stream is used by the next apply of that stream instead of a read,
        and replaced by the state that apply produced. The script's version check still decides,
        so a stale primed state only costs a retry. Each call replaces the whole cache (one batch).
        """
        self._known = await self.load_states(stream_keys)

    async def stored_version(self, stream_key: str) -> int:
        return parse_state(stream_key, await self._get(self.keys.state(stream_key))).version

    async def apply(
        self, event: Event, checkpoint: Checkpoint | None = None, *, known: State | None = None
    ) -> ApplyResult:
        """Apply ``event`` if it is the next of its stream; report a duplicate or a gap otherwise.

        ``known``: the stream's state as the caller last saw it (default: the state primed by
        :meth:`prime_states`, else a read). The script still compares versions, so a stale
        ``known`` only costs a retry.
        Raises :class:`ApplyRejected` when the core refuses to fold the event (a poison event),
        :class:`ReadModelUnavailable` when Redis cannot be reached.
        """
        primed = self._known.pop(event.flag_key, None)
        known = known if known is not None else primed
        for _ in range(_RETRIES_ON_RACE):
            if known is None or known.stream != event.flag_key:
                known = parse_state(event.flag_key, await self._get(self.keys.state(event.flag_key)))
            plan, after = self._plan(known, event)
            outcome, stored = await self._run(plan, checkpoint)
            if outcome != "stale_plan":
                if outcome != ApplyOutcome.APPLIED:
                    return ApplyResult(ApplyOutcome(outcome), stored)
                environments = tuple(w.environment for w in plan.writes if w.environment is not None)
                if after is not None:
                    self._known[event.flag_key] = after
                return ApplyResult(ApplyOutcome.APPLIED, stored, environments, after)
            known = None
        raise ReadModelUnavailable(f"stream {event.flag_key!r} kept changing under the projector")

    async def apply_many(self, items: Sequence[tuple[Event, Checkpoint]]) -> list[ApplyResult | None]:
        """Apply consecutive records of one or more partitions in ONE round trip.

        Returns one entry per item: its result when it went exactly as planned, ``None`` when it
        did not (or was not planned). From a partition's first ``None`` on, the caller must apply
        that partition's records with :meth:`apply`, one at a time.

        Each record is planned from the state the previous ones produce (streams not known yet
        are read with one MGET); a partition's planning stops before a version gap or an event the
        core refuses. The planned scripts run in order in one pipeline (no transaction: each
        script is its own atomic compare-and-set on the stream version). Give each record of a
        partition the floor its predecessor's checkpoint makes (``previous.offset + 1``): a script
        that does not move the checkpoint (gap, stale plan, behind) then turns every later one of
        that partition into a no-op "behind". Raises :class:`ReadModelUnavailable`.
        """
        streams = {event.flag_key for event, _ in items}
        missing = [s for s in streams if s not in self._known]
        if missing:
            self._known.update(await self.load_states(missing))
        planned = self._plan_many(items)
        if not planned:
            return [None] * len(items)
        replies = await self._guarded(lambda: self._run_many(planned, items))
        results: list[ApplyResult | None] = [None] * len(items)
        stopped: set[tuple[str, int]] = set()
        for (index, expected, plan, after), reply in zip(planned, replies, strict=True):
            partition = (items[index][1].topic, items[index][1].partition)
            if partition in stopped:
                continue
            if isinstance(reply, BaseException) or str(reply[0]) != expected.value:
                stopped.add(partition)
                continue
            applied = expected is ApplyOutcome.APPLIED
            environments = tuple(w.environment for w in plan.writes if w.environment is not None)
            results[index] = ApplyResult(expected, int(reply[1]), environments if applied else (), after)
            if after is not None:
                self._known[plan.stream_key] = after
        if stopped:  # something unplanned happened: forget the batch's states, read them afresh
            for stream in streams:
                self._known.pop(stream, None)
        return results

    async def position(self, group: str, topic: str, partition: int) -> tuple[int | None, int]:
        """A partition's checkpoint (``None``: none) and the log epoch it belongs to, in one read."""
        try:
            raw, epoch = await self._client.mget(
                self.keys.checkpoint(group, topic, partition), self.keys.log_epoch(group, topic, partition)
            )
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading a checkpoint") from e
        return (None if raw is None else int(raw)), int(epoch or 0)

    async def reset_epoch(self, group: str, topic: str, partition: int, epoch: int) -> int:
        """Enter log epoch ``epoch``: the checkpoint goes back to 0 (the new log is read from its
        beginning), unless the stored epoch is already at or past it. Returns the stored epoch."""
        keys = [self.keys.checkpoint(group, topic, partition), self.keys.log_epoch(group, topic, partition)]
        try:
            return int(await self._reset_epoch(keys=keys, args=[epoch]))
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable resetting a checkpoint") from e

    async def checkpoint(self, group: str, topic: str, partition: int) -> int | None:
        """The next offset to read for a partition, or ``None`` when this read model has none."""
        raw = await self._get(self.keys.checkpoint(group, topic, partition))
        return None if raw is None else int(raw)

    def _plan(self, state: State, event: Event) -> tuple[ApplyPlan, State | None]:
        if state.version != event.version - 1:
            return plan_noop(event.flag_key, event.version), None
        try:
            if isinstance(state, SegmentState):
                segment = evolve_segment(state, event)
                return plan_segment_apply(self.keys, segment, event), segment
            flag = evolve(state, event)
            return plan_flag_apply(self.keys, state, flag, event), flag
        except (FlagstreamError, ValueError) as e:  # ValueError: pydantic validation
            raise ApplyRejected(
                f"cannot apply {event.type} v{event.version} of {event.flag_key!r}: {e}"
            ) from e

    def _plan_many(self, items: Sequence[tuple[Event, Checkpoint]]) -> list[_Planned]:
        """Plan records in order from the known states; a partition stops at its first gap or
        refused event."""
        states = dict(self._known)
        planned: list[_Planned] = []
        stopped: set[tuple[str, int]] = set()
        for index, (event, checkpoint) in enumerate(items):
            partition = (checkpoint.topic, checkpoint.partition)
            if partition in stopped:
                continue
            state = states[event.flag_key]
            if state.version >= event.version:
                planned.append(
                    (index, ApplyOutcome.DUPLICATE, plan_noop(event.flag_key, event.version), None)
                )
                continue
            try:
                if state.version != event.version - 1:
                    raise ApplyRejected("gap")
                plan, after = self._plan(state, event)
            except ApplyRejected:
                stopped.add(partition)
                continue
            assert after is not None
            states[event.flag_key] = after
            planned.append((index, ApplyOutcome.APPLIED, plan, after))
        return planned

    async def _run_many(
        self, planned: list[_Planned], items: Sequence[tuple[Event, Checkpoint]]
    ) -> list[Any]:
        """EVALSHA each plan in one pipeline; a reply is ``[outcome, stored]`` or the error. When Redis
        does not know the script (a restart), no script ran: load it and run the pipeline again."""
        try:
            replies = await self._pipeline_many(planned, items)
            if all(isinstance(reply, NoScriptError) for reply in replies):
                self._apply.sha = await self._client.script_load(self._apply.script)
                replies = await self._pipeline_many(planned, items)
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable while applying a batch") from e
        return replies

    async def _pipeline_many(
        self, planned: list[_Planned], items: Sequence[tuple[Event, Checkpoint]]
    ) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for index, _, plan, _ in planned:
                keys, args = self._script_args(plan, items[index][1])
                pipe.evalsha(self._apply.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """The hook a subclass wraps Redis calls in (a breaker, retries); here: just the call."""
        return await call()

    def _script_args(
        self, plan: ApplyPlan, checkpoint: Checkpoint | None
    ) -> tuple[list[str], list[str | int]]:
        ckpt_key = (
            self.keys.checkpoint(checkpoint.group, checkpoint.topic, checkpoint.partition)
            if checkpoint is not None
            else self.keys.checkpoint("-", "-", 0)
        )
        epoch_key = (
            self.keys.log_epoch(checkpoint.group, checkpoint.topic, checkpoint.partition)
            if checkpoint is not None
            else self.keys.log_epoch("-", "-", 0)
        )
        keys: list[str] = [
            self.keys.state(plan.stream_key),
            ckpt_key,
            self.keys.environments,
            self.keys.head(plan.stream_key),
            epoch_key,
        ]
        args: list[str | int] = [
            plan.version,
            plan.state_json,
            "" if checkpoint is None else checkpoint.offset + 1,
            "" if checkpoint is None or checkpoint.floor is None else checkpoint.floor,
            len(plan.writes),
            "" if checkpoint is None or checkpoint.epoch is None else checkpoint.epoch,
            plan.prev_hash,
            plan.hash,
        ]
        for write in plan.writes:
            keys += [write.hash_key, write.rev_key]
            args += [write.field, write.doc or "", write.channel, write.environment or ""]
        return keys, args

    async def _run(self, plan: ApplyPlan, checkpoint: Checkpoint | None) -> tuple[str, int]:
        keys, args = self._script_args(plan, checkpoint)
        try:
            outcome, stored = await self._apply(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise ReadModelUnavailable(f"redis unavailable while applying {plan.stream_key!r}") from e
        except RedisError as e:
            raise ReadModelUnavailable(f"redis refused the apply script: {e}") from e
        return str(outcome), int(stored)

    async def _get(self, key: str) -> str | None:
        try:
            value = await self._client.get(key)
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable(f"redis unavailable reading {key!r}") from e
        return None if value is None else str(value)
