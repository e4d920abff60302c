"""The ordering rule for one stage, in one place: the relay and the projector pass every event
through :meth:`DeadLetterGate.process` and call :meth:`DeadLetterGate.release` between batches.

- an event of a blocked flag is parked as *waiting* (durably, so the stage may move on);
- an event whose processing fails *permanently* is parked as the flag's blocker;
- a *retriable* failure (``CircuitOpen`` included) propagates: the caller keeps the work;
- :meth:`release` processes again, in version order, what operators redrove and what waited
  behind a resolved blocker, and unblocks the flag when nothing of it is left.

Run one gate per stage loop, and call :meth:`refresh` at the start of every batch (and after a
Kafka partition assignment): only the stage's own loop blocks flags, operators only unblock them,
so the cached set is never missing a flag that Postgres says is blocked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from core.envelope import Event
from events.deadletters.models import DeadLetter, KafkaCoordinates, NewDeadLetter, Stage
from events.deadletters.store import DeadLetterStore
from events.resilience.classify import describe_error, is_retriable

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
        self._blocked: set[str] | None = None

    async def refresh(self) -> set[str]:
        """Reload the flags blocked at this stage."""
        self._blocked = await self.store.blocked_flags(self.stage)
        return set(self._blocked)

    async def is_blocked(self, flag_key: str) -> bool:
        return flag_key in await self._blocked_flags()

    async def process(self, event: Event, apply: Apply, *, kafka: KafkaCoordinates | None = None) -> Outcome:
        """Apply ``event`` unless its flag is blocked; park it on a permanent failure.

        Retriable errors (and ``CircuitOpen``) propagate unchanged: nothing was parked.
        """
        blocked = await self._blocked_flags()
        if event.flag_key in blocked:
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
        if flag_key is not None:
            (await self._blocked_flags()).add(flag_key)
        return letter

    async def release(self, apply: Apply, *, limit: int = 100) -> ReleaseReport:
        """Process again what may now pass, in version order per flag.

        A permanent failure parks the letter again and holds the rest of its flag; a retriable
        one propagates (the letters stay pending; call again later).
        """
        processed = parked = 0
        held: set[str | None] = set()
        try:
            for letter in await self.store.releasable(self.stage, limit=limit):
                if letter.flag_key in held:
                    continue
                if await self._retry_letter(letter, apply):
                    processed += 1
                else:
                    parked += 1
                    held.add(letter.flag_key)
        finally:
            await self.refresh()
        if processed or parked:
            log.info("deadletters.released", stage=self.stage, processed=processed, parked=parked)
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
            await self._park_again(letter, exc)
            return False
        await self.store.mark_reprocessed(letter.id)
        return True

    async def _park_again(self, letter: DeadLetter, exc: Exception) -> None:
        """Same dedup identity as ``letter``: a waiting letter becomes the blocker in place, a
        redriven one gets a new parked letter (and is recorded as processed)."""
        error_class, message = describe_error(exc)
        await self.store.park(
            NewDeadLetter(
                stage=self.stage,
                flag_key=letter.flag_key,
                error_class=error_class,
                error_message=message,
                version=letter.version,
                event_id=letter.event_id,
                event_body=letter.event_body,
                raw_record=letter.raw_record,
                kafka=letter.kafka,
                attempts=letter.attempts + 1 if letter.status == "redriven" else 1,
            )
        )
        if letter.status == "redriven":
            await self.store.mark_reprocessed(letter.id)
        log.warning(
            "deadletters.reparked",
            stage=self.stage,
            letter=letter.id,
            flag=letter.flag_key,
            version=letter.version,
            error_class=error_class,
        )

    async def _park_failure(self, event: Event, exc: Exception, *, kafka: KafkaCoordinates | None) -> None:
        await self.store.park(NewDeadLetter.for_event(self.stage, event, exc, kafka=kafka))
        (await self._blocked_flags()).add(event.flag_key)
        log.error(
            "deadletters.parked",
            stage=self.stage,
            flag=event.flag_key,
            version=event.version,
            event_id=str(event.event_id),
            error_class=type(exc).__name__,
        )

    async def _blocked_flags(self) -> set[str]:
        if self._blocked is None:
            self._blocked = await self.store.blocked_flags(self.stage)
        return self._blocked
