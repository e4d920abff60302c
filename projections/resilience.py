"""The projector's Redis writes under a circuit breaker and a bounded retry policy.

:class:`ResilientReadModel` is a :class:`~projections.readmodel.RedisReadModel` whose Redis calls
go through :func:`events.resilience.call_resilient` with its own breaker (``redis-projector``):

- retriable errors (``ReadModelUnavailable``: connection lost, timeouts) are retried a few times
  with jittered backoff, then raised; they count against the breaker;
- an open breaker refuses at once: :class:`~events.resilience.CircuitOpen` is translated to
  :class:`ReadModelUnavailable`, so the projector seeks back and pauses without committing, exactly
  as when Redis itself answers with an error, and resumes by itself when a trial call succeeds;
- permanent errors (``ApplyRejected``) pass through unchanged and do not trip the breaker.

It also offers the two writes the dead-letter queue needs and the plain read model does not:
:meth:`ResilientReadModel.advance_checkpoint` (move a partition's checkpoint past a record that is
skipped or parked, without touching any stream) and :meth:`ResilientReadModel.bridge_versions`
(declare versions of a stream that an operator purged as passed, so the next event folds onto the
state without them). Both run the same Lua compare-and-set script as :meth:`apply`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from redis.asyncio import Redis

from core.envelope import Event
from events.resilience import AsyncCircuitBreaker, CircuitOpen, RetryPolicy, call_resilient
from projections.documents import ApplyPlan, is_segment_stream, plan_noop
from projections.errors import ReadModelUnavailable
from projections.keys import Keyspace
from projections.readmodel import ApplyOutcome, ApplyResult, Checkpoint, RedisReadModel, State

__all__ = [
    "PROJECTOR_BREAKER",
    "PROJECTOR_RETRY",
    "ResilientReadModel",
    "advance_checkpoint",
    "make_projector_breaker",
]

T = TypeVar("T")

PROJECTOR_BREAKER: Final = "redis-projector"
PROJECTOR_RETRY: Final = RetryPolicy(max_attempts=4, max_delay=5.0, initial_wait=0.05, max_wait=1.0)
"""Bounded: a Redis outage is noticed within a few seconds, then the breaker takes over."""


def make_projector_breaker(*, fail_max: int = 5, reset_timeout: float = 5.0) -> AsyncCircuitBreaker:
    """The projector's breaker on Redis (metrics ``breaker_state{breaker="redis-projector"}``)."""
    return AsyncCircuitBreaker(PROJECTOR_BREAKER, fail_max=fail_max, reset_timeout=reset_timeout)


class ResilientReadModel(RedisReadModel):
    """A read model whose Redis calls go through a breaker and a bounded retry policy."""

    def __init__(
        self,
        client: Redis,
        keys: Keyspace | None = None,
        *,
        breaker: AsyncCircuitBreaker | None = None,
        policy: RetryPolicy = PROJECTOR_RETRY,
    ) -> None:
        super().__init__(client, keys)
        self.breaker = breaker or make_projector_breaker()
        self.policy = policy

    async def apply(
        self, event: Event, checkpoint: Checkpoint | None = None, *, known: State | None = None
    ) -> ApplyResult:
        return await self._guarded(lambda: RedisReadModel.apply(self, event, checkpoint, known=known))

    async def load_states(self, stream_keys: Iterable[str]) -> dict[str, State]:
        keys = list(stream_keys)
        return await self._guarded(lambda: RedisReadModel.load_states(self, keys))

    async def checkpoint(self, group: str, topic: str, partition: int) -> int | None:
        return await self._guarded(lambda: RedisReadModel.checkpoint(self, group, topic, partition))

    async def advance_checkpoint(self, checkpoint: Checkpoint) -> ApplyOutcome:
        """Move the checkpoint to ``checkpoint.offset + 1`` (never backwards) and nothing else.

        ``BEHIND`` when the stored checkpoint is below ``checkpoint.floor`` (Redis lost data),
        ``DUPLICATE`` otherwise.
        """

        async def run() -> ApplyOutcome:
            # version 0: every stream is at version >= 0, so the script only moves the checkpoint
            outcome, _ = await self._run(plan_noop("-", 0), checkpoint)
            return ApplyOutcome(outcome)

        return await self._guarded(run)

    async def bridge_versions(self, stream_key: str, stored: int, up_to: int) -> bool:
        """Mark versions ``stored + 1 .. up_to`` of a stream as passed, keeping its content.

        Used only for versions whose events were purged from the dead-letter queue: the state is
        rewritten at version ``up_to`` with the same flag (or segment), no document changes and no
        notice. Compare-and-set: ``False`` when the stream is no longer at ``stored``.
        """
        if up_to <= stored:
            return False

        async def run() -> bool:
            state: State = (
                await self.load_segment_state(stream_key)
                if is_segment_stream(stream_key)
                else await self.load_flag_state(stream_key)
            )
            if state.version != stored:
                return False
            for version in range(stored + 1, up_to + 1):  # one step per version: the script's CAS
                step = state.model_copy(update={"version": version}).model_dump_json()
                outcome, _ = await self._run(ApplyPlan(stream_key, version, step, ()), None)
                if outcome != ApplyOutcome.APPLIED:
                    return False
            return True

        return await self._guarded(run)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call_resilient(self.breaker, self.policy, call)
        except CircuitOpen as e:
            raise ReadModelUnavailable(f"redis circuit open, retry in {e.retry_after:.1f}s") from e


async def advance_checkpoint(read_model: RedisReadModel, checkpoint: Checkpoint) -> ApplyOutcome:
    """Move a partition's checkpoint past a record that changes no stream (skipped or parked):
    through the breaker for a :class:`ResilientReadModel`, directly otherwise."""
    if isinstance(read_model, ResilientReadModel):
        return await read_model.advance_checkpoint(checkpoint)
    outcome, _ = await read_model._run(plan_noop("-", 0), checkpoint)
    return ApplyOutcome(outcome)
