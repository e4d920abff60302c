"""The projector's side of the dead-letter queue (stage ``projector``), built on
:class:`events.deadletters.DeadLetterGate` (the ordering rule in one place).

- **Poison** (a :class:`PoisonEvent`: unparseable record, refused by the core, version gap) is
  parked as its flag's *blocker* — the raw record when it could not be read, the event otherwise,
  with the Kafka coordinates — and the partition's checkpoint moves past it.
- **Held**: later records of a blocked flag are parked as *waiting*
  (``WaitingBehindDeadLetter``) and the checkpoint moves past them too, so other flags flow.
- **Release**: between batches, every ``refresh_interval`` seconds, the projector applies what
  operators redrove and what waited behind a resolved blocker, in version order, then reloads the
  blocked flags from Postgres (so a redrive or purge done by the API reaches the running
  projector within ``refresh_interval`` seconds). :func:`redrive_projector_letters` does the same
  at once for an operator's request.
- **Purge**: a purged event is skipped for good. The next event of its flag then follows a
  version gap; when every missing version is a *purged* dead letter (of the projector or the relay
  stage), the read model is *bridged* over them (:meth:`ResilientReadModel.bridge_versions`) and
  the event is folded onto the state without them. Events that change an environment carry its
  full resulting configuration, so that environment converges exactly; what only the purged event
  changed is lost — which is what purging means. A gap that purges do not explain stays a blocker.
- Retriable errors (Redis or Postgres unreachable) never park anything: they propagate as
  :class:`ReadModelUnavailable` and the projector seeks back and pauses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar, Final

import structlog

from core.envelope import Event
from core.errors import FlagstreamError
from events.deadletters import (
    MAX_PAGE,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterResolved,
    DeadLetterStore,
    KafkaCoordinates,
    NewDeadLetter,
    Stage,
)
from events.deadletters.gate import DeadLetterGate
from events.errors import StoreUnavailable
from projections.errors import ApplyRejected, PoisonEvent, ReadModelUnavailable
from projections.readmodel import ApplyOutcome, ApplyResult, Checkpoint
from projections.resilience import ResilientReadModel

__all__ = [
    "NOT_PROJECTED_PREFIXES",
    "STAGE",
    "DeadLettersUnavailable",
    "ProjectorDeadLetters",
    "ProjectorRedriver",
    "RedriveReport",
    "VersionGap",
    "is_projected_stream",
    "redrive_projector_letters",
]

STAGE: Final[Stage] = "projector"
NOT_PROJECTED_PREFIXES: Final = ("incident:", "ops:", "alert:")
"""Streams the projector skips (docs/architecture.md, stream-prefix table)."""

_PURGE_STAGES: Final[tuple[Stage, ...]] = ("projector", "relay")  # a relay purge: Kafka never had it
_log = structlog.get_logger("projections.deadletters")


def is_projected_stream(stream_key: str) -> bool:
    return not stream_key.startswith(NOT_PROJECTED_PREFIXES)


class DeadLettersUnavailable(ReadModelUnavailable):
    """Postgres (the dead-letter queue) cannot be reached: the projector pauses as for Redis."""

    code: ClassVar[str] = "dead_letters_unavailable"


class VersionGap(FlagstreamError):
    """An event follows a version its stream's read model never saw (and no purge explains)."""

    code: ClassVar[str] = "version_gap"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RedriveReport:
    redriven: tuple[int, ...]  # letters this call marked redriven
    processed: int  # letters applied again (or found applied) and marked reprocessed
    parked: int  # freed letters not reprocessed: failed again, or held behind one that did
    still_blocked: tuple[str, ...]  # flags still blocked at the projector after the redrive


class ProjectorDeadLetters:
    """The projector's dead-letter hooks. One per projector loop; call :meth:`start` first."""

    def __init__(
        self,
        store: DeadLetterStore,
        read_model: ResilientReadModel,
        *,
        refresh_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.read_model = read_model
        self.gate = DeadLetterGate(store, STAGE)
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._next_refresh = 0.0

    async def start(self) -> set[str]:
        """Load the blocked flags from the dead-letter queue."""
        async with _store_calls("load blocked flags"):
            blocked = await self.gate.refresh()
        self._next_refresh = self._clock() + self.refresh_interval
        _log.info("projector.dead_letters_loaded", blocked=len(blocked))
        return blocked

    async def maintain(self, *, force: bool = False) -> None:
        """Between batches: release what may pass, then reload the blocked flags (when due).

        Postgres unreachable: logged, tried again next time; projection goes on with the cached
        blocked flags (only this loop blocks flags, so the cache misses none).
        """
        if not force and self._clock() < self._next_refresh:
            return
        self._next_refresh = self._clock() + self.refresh_interval
        try:
            async with _store_calls("release"):
                try:
                    await self.gate.release(self.apply_released)  # refreshes the blocked flags too
                except DeadLetterResolved as e:  # another releaser (a redrive request) got there first
                    _log.info("projector.release_raced", error=str(e))
                    await self.gate.refresh()
        except DeadLettersUnavailable as e:
            _log.warning("projector.dead_letters_unavailable", error=str(e))

    async def screen(self, event: Event, checkpoint: Checkpoint) -> ApplyOutcome | None:
        """``None``: project ``event``. Otherwise it was held (parked as waiting behind its flag's
        blocker) and the checkpoint moved past it: the outcome of that move."""
        async with _store_calls("screen"):
            if not await self.gate.holds(event):  # the ordering rule: only its blocker's version on waits
                return None
        if event.version <= await self.read_model.stored_version(event.flag_key):
            # Already projected: a redelivery (e.g. after a rewind) is a duplicate, not a letter to hold.
            _log.info(
                "projector.duplicate_skipped",
                stream=event.flag_key,
                version=event.version,
                offset=checkpoint.offset,
            )
            return await self.read_model.advance_checkpoint(checkpoint)
        async with _store_calls("screen"):
            await self.store.park(NewDeadLetter.waiting(STAGE, event, kafka=_coordinates(checkpoint)))
        _log.info("projector.held", stream=event.flag_key, version=event.version, offset=checkpoint.offset)
        return await self.read_model.advance_checkpoint(checkpoint)

    async def park(
        self,
        poison: PoisonEvent,
        event: Event | None,
        checkpoint: Checkpoint,
        *,
        record_key: str | None = None,
    ) -> ApplyOutcome:
        """Park a poison record as its flag's blocker and move the checkpoint past it.

        A gap explained by purged versions is bridged and the event applied instead; a record
        that operators already purged is skipped.
        """
        if event is not None and poison.kind == "gap":
            bridged = await self._apply_over_purged(event, checkpoint)
            if bridged is not None:
                return bridged.outcome
        letter = _letter_for(poison, event, checkpoint, record_key)
        async with _store_calls("park"):
            if await self._was_purged(letter):
                _log.info("projector.purged_record_skipped", stream=letter.flag_key, offset=checkpoint.offset)
            else:
                parked = await self.store.park(letter)
                await self.gate.refresh()
                _log.error(
                    "projector.parked",
                    letter=parked.id,
                    stream=letter.flag_key,
                    version=letter.version,
                    error_class=letter.error_class,
                    offset=checkpoint.offset,
                )
        return await self.read_model.advance_checkpoint(checkpoint)

    async def apply_released(self, event: Event) -> None:
        """Apply a released letter's event (no checkpoint: it is not read from a partition)."""
        try:
            result = await self.read_model.apply(event)
        except ApplyRejected as e:
            raise _root_cause(e) from None
        if result.outcome is ApplyOutcome.GAP and await self._apply_over_purged(event, None) is None:
            raise VersionGap(f"{event.flag_key!r} is at version {result.stored_version}; got {event.version}")

    async def _apply_over_purged(self, event: Event, checkpoint: Checkpoint | None) -> ApplyResult | None:
        stored = await self.read_model.stored_version(event.flag_key)
        missing = set(range(stored + 1, event.version))
        if not missing or not missing <= await self._purged_versions(event.flag_key):
            return None
        await self.read_model.bridge_versions(event.flag_key, stored, event.version - 1)
        result = await self.read_model.apply(event, checkpoint)
        if result.outcome is ApplyOutcome.GAP:
            return None
        _log.warning(
            "projector.bridged_purged_versions",
            stream=event.flag_key,
            versions=sorted(missing),
            outcome=result.outcome.value,
        )
        return result

    async def _purged_versions(self, flag_key: str) -> set[int]:
        versions: set[int] = set()
        async with _store_calls("purged versions"):
            for stage in _PURGE_STAGES:
                flt = DeadLetterFilter(stage=stage, flag_key=flag_key, status="purged")
                page = await self.store.list(flt, limit=500)
                versions |= {lt.version for lt in page.items if lt.version is not None}
        return versions

    async def _was_purged(self, letter: NewDeadLetter) -> bool:
        if letter.flag_key is None:
            return False
        page = await self.store.list(
            DeadLetterFilter(stage=STAGE, flag_key=letter.flag_key, status="purged"), limit=500
        )
        key = letter.dedup_key()
        return any(_dedup_key_of(lt.event_id, lt.kafka) == key for lt in page.items)


class ProjectorRedriver:
    """The projector stage's :class:`events.deadletters.operations.Redriver`: reprocesses at once, in the
    order given ((flag, version)), the letters a redrive freed, through the read model's
    compare-and-set (a running projector releasing the same letters changes nothing twice).
    A letter that fails permanently again is parked again and holds the rest of its flag — the
    gate's own release path (:meth:`DeadLetterGate.retry_letters`), so the rule is the same."""

    def __init__(self, dlq: DeadLetterStore, read_model: ResilientReadModel) -> None:
        self._hooks = ProjectorDeadLetters(dlq, read_model)

    async def __call__(self, letters: Sequence[DeadLetter]) -> int:
        ours = [letter for letter in letters if letter.stage == STAGE]
        async with _store_calls("redrive"):
            report = await self._hooks.gate.retry_letters(ours, self._hooks.apply_released)
        return report.processed


async def redrive_projector_letters(
    dlq: DeadLetterStore,
    read_model: ResilientReadModel,
    *,
    flag_key: str | None = None,
    letter_ids: Iterable[int] | None = None,
    by: str = "system",
    reason: str | None = None,
) -> RedriveReport:
    """Redrive parked projector letters (those named, or the blockers of ``flag_key``), then
    reprocess at once, in version order, what that freed (:class:`ProjectorRedriver`).

    Letters already redriven or purged are not redriven again, but what they freed is processed.
    A running projector notices the unblocked flag within its ``refresh_interval``.
    """
    if flag_key is None and letter_ids is None:
        raise ValueError("redrive needs a flag key or letter ids")
    redriven: list[int] = []
    flags: set[str | None] = {flag_key} if flag_key is not None else set()
    async with _store_calls("redrive"):
        for letter_id in letter_ids or ():
            letter = await dlq.get(letter_id)
            flags.add(letter.flag_key)
            if letter.status == "parked":
                redriven.append((await dlq.mark_redriven(letter_id, by, reason)).id)
        if flag_key is not None:  # its blockers: the letters waiting behind them follow by themselves
            page = await dlq.list(DeadLetterFilter(stage=STAGE, flag_key=flag_key), limit=MAX_PAGE)
            for letter in page.items:
                if letter.is_blocker:
                    redriven.append((await dlq.mark_redriven(letter.id, by, reason)).id)
        freed = [lt for lt in await dlq.releasable(STAGE, limit=MAX_PAGE) if lt.flag_key in flags]
    processed = await ProjectorRedriver(dlq, read_model)(freed)
    async with _store_calls("redrive"):
        blocked = await dlq.blocked_flags(STAGE)
    _log.info("projector.redriven", letters=redriven, freed=len(freed), processed=processed)
    return RedriveReport(tuple(redriven), processed, len(freed) - processed, tuple(sorted(blocked)))


def _coordinates(checkpoint: Checkpoint) -> KafkaCoordinates:
    return KafkaCoordinates(checkpoint.topic, checkpoint.partition, checkpoint.offset)


def _dedup_key_of(event_id: object, kafka: KafkaCoordinates | None) -> str | None:
    if event_id is not None:
        return f"event:{event_id}"
    if kafka is not None:
        return f"kafka:{kafka.topic}:{kafka.partition}:{kafka.offset}"
    return None


def _root_cause(error: BaseException) -> BaseException:
    """The deepest error of our own tree (e.g. ``UnknownEventType`` behind ``ApplyRejected``)."""
    found = error
    current = error.__cause__
    while current is not None:
        if isinstance(current, FlagstreamError):
            found = current
        current = current.__cause__
    return found


def _letter_for(
    poison: PoisonEvent, event: Event | None, checkpoint: Checkpoint, record_key: str | None
) -> NewDeadLetter:
    if poison.kind == "gap":
        cause: BaseException = VersionGap(str(poison))
    else:
        cause = poison.__cause__ if poison.__cause__ is not None else poison
        cause = _root_cause(cause) if isinstance(cause, FlagstreamError) else cause
    kafka = _coordinates(checkpoint)
    if event is not None:
        return NewDeadLetter.for_event(STAGE, event, cause, kafka=kafka)
    return NewDeadLetter.for_record(
        STAGE, poison.raw or b"", cause, flag_key=poison.stream_key or record_key, kafka=kafka
    )


@asynccontextmanager
async def _store_calls(operation: str) -> AsyncIterator[None]:
    """A dead-letter store that cannot be reached becomes :class:`DeadLettersUnavailable`."""
    try:
        yield
    except StoreUnavailable as e:
        raise DeadLettersUnavailable(f"dead letters: {operation}: {e}") from e
