"""The ordering rule for one stage, in one place: the relay and the projector pass every event
through :meth:`DeadLetterGate.process` and call :meth:`DeadLetterGate.release` between batches.

- an event at or after its flag's blocker is parked as *waiting* (durably, so the stage may move
  on); what came before the blocker passes (:class:`events.deadletters.ordering.Blockers`);
- an event whose processing fails *permanently* is parked as the flag's blocker;
- a *retriable* failure (``CircuitOpen`` included) propagates: the caller keeps the work;
- :meth:`release` processes again, in version order, what operators redrove and what waited
  behind a resolved blocker, and unblocks the flag when nothing of it is left.

Run one gate per stage loop, and call :meth:`refresh` at the start of every batch (and after a
Kafka partition assignment): only the stage's own loop blocks flags, operators only unblock them,
so the cached set is never missing a flag that Postgres says is blocked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from core.envelope import Event
from events.deadletters.models import DeadLetter, DeadLetterResolved, KafkaCoordinates, NewDeadLetter, Stage
from events.deadletters.ordering import Blockers, repark
from events.deadletters.store import DeadLetterStore
from events.resilience.classify import is_retriable

__all__ = ["DeadLetterGate", "Outcome", "ReleaseReport"]

Outcome = Literal["done", "parked", "waiting"]
Apply = Callable[[Event], Awaitable[object]]
Parse = Callable[[str | bytes], Event]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReleaseReport:
    processed: int  # letters processed again successfully
    parked: int  # letters that failed permanently again (their flags stay blocked)


class DeadLetterGate:
    def __init__(self, store: DeadLetterStore, stage: Stage, *, parse: Parse = Event.from_json) -> None:
        self.store = store
        self.stage = stage
        self._parse = parse
        self._blockers: Blockers | None = None

    async def refresh(self) -> set[str]:
        """Reload the flags blocked at this stage (and the version each is blocked from)."""
        self._blockers = await self.store.blockers(self.stage)
        return self._blockers.flags()

    async def is_blocked(self, flag_key: str) -> bool:
        """Whether some events of ``flag_key`` wait at this stage (see :meth:`holds` for one event)."""
        return flag_key in await self._current()

    async def holds(self, event: Event) -> bool:
        """Whether ``event`` waits behind its flag's blocker (:class:`Blockers`: only its version and
        later ones do)."""
        return (await self._current()).holds(event.flag_key, event.version)

    async def process(self, event: Event, apply: Apply, *, kafka: KafkaCoordinates | None = None) -> Outcome:
        """Apply ``event`` unless it waits behind its flag's blocker; park it on a permanent failure.

        Retriable errors (and ``CircuitOpen``) propagate unchanged: nothing was parked.
        """
        if await self.holds(event):
            await self.store.park(NewDeadLetter.waiting(self.stage, event, kafka=kafka))
            return "waiting"
        try:
            await apply(event)
        except Exception as exc:
            if is_retriable(exc):
                raise
            await self._park_failure(event, exc, kafka=kafka)
            return "parked"
        return "done"

    async def park_record(
        self, raw: bytes, error: BaseException, *, flag_key: str | None, kafka: KafkaCoordinates | None
    ) -> DeadLetter:
        """Park a record that could not be read as an event; its flag (the record key) blocks."""
        letter = await self.store.park(
            NewDeadLetter.for_record(self.stage, raw, error, flag_key=flag_key, kafka=kafka)
        )
        (await self._current()).block(flag_key, None)
        return letter

    async def release(self, apply: Apply, *, limit: int = 100) -> ReleaseReport:
        """Process again what may now pass, in version order per flag.

        A permanent failure parks the letter again and holds the rest of its flag; a retriable
        one propagates (the letters stay pending; call again later).
        """
        try:
            report = await self.retry_letters(await self.store.releasable(self.stage, limit=limit), apply)
        finally:
            await self.refresh()
        if report.processed or report.parked:
            log.info(
                "deadletters.released", stage=self.stage, processed=report.processed, parked=report.parked
            )
        return report

    async def retry_letters(self, letters: Sequence[DeadLetter], apply: Apply) -> ReleaseReport:
        """Process ``letters`` (released ones, in (flag, version) order) again; the first permanent
        failure of a flag parks that letter again and holds the flag's later letters (the ordering
        rule, :class:`Blockers`)."""
        processed = parked = 0
        held = Blockers()
        for letter in letters:
            if held.holds(letter.flag_key, letter.version):
                continue
            if await self._retry_letter(letter, apply):
                processed += 1
            else:
                parked += 1
                held.block(letter.flag_key, letter.version)
        return ReleaseReport(processed, parked)

    async def _retry_letter(self, letter: DeadLetter, apply: Apply) -> bool:
        content = letter.event_body if letter.event_body is not None else letter.raw_record
        try:
            if content is None:
                raise ValueError("the dead letter holds neither an event nor a record")
            event = self._parse(content)
            await apply(event)
        except Exception as exc:
            if is_retriable(exc):
                raise
            await repark(self.store, letter, exc)
            return False
        try:
            await self.store.mark_reprocessed(letter.id)
        except DeadLetterResolved:  # another releaser (the running stage, a redrive) got there first
            log.info("deadletters.release_raced", stage=self.stage, letter=letter.id)
        return True

    async def _park_failure(self, event: Event, exc: Exception, *, kafka: KafkaCoordinates | None) -> None:
        await self.store.park(NewDeadLetter.for_event(self.stage, event, exc, kafka=kafka))
        (await self._current()).block(event.flag_key, event.version)
        log.error(
            "deadletters.parked",
            stage=self.stage,
            flag=event.flag_key,
            version=event.version,
            event_id=str(event.event_id),
            error_class=type(exc).__name__,
        )

    async def _current(self) -> Blockers:
        if self._blockers is None:
            self._blockers = await self.store.blockers(self.stage)
        return self._blockers
