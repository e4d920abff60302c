"""Dead letters at the relay stage: park the poison event, hold its flag, release in version order.

- A *permanent* publish error for one event parks it (``stage="relay"``, the event body, error
  class and message, attempts). Its flag is then blocked at the relay from that version on
  (:mod:`events.deadletters.ordering`; earlier versions, republished after a log loss, pass):
  later events of that flag are parked as *waiting* (``error_class = WaitingBehindDeadLetter``,
  :data:`WAITING`) instead of being published past it; other flags keep flowing. Retriable errors
  never come here.
- Redrive (:func:`redrive_relay_letters`): the flag's letters are marked redriven, then published
  again in version order, the poison one first; each published letter is marked reprocessed. If
  the poison one fails permanently again it is parked again (a new letter; the redriven one is
  marked processed) and the rest of the flag keeps waiting behind it.
- Purge (:func:`purge_relay_letter`): the poison letter is resolved as purged — its event is never
  published, also not when the whole log is republished — then the held events are released.

The relay process releases what operators redrove from elsewhere (API, CLI) on its own, every
round (:func:`release_relay_letters`). Two processes releasing the same letters at once publish
duplicates in order (each publishes a flag's letters in version order), never out of order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

import asyncpg
import structlog

from core.envelope import Event
from events.deadletters import (
    WAITING,
    Blockers,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterResolved,
    DeadLetterStore,
    NewDeadLetter,
    Stage,
    repark,
)
from events.errors import StoreUnavailable
from events.ports import EventPublisher, PublishedRecord
from events.resilience import classify
from events.store.db import CONNECTION_ERRORS

__all__ = [
    "RELAY_STAGE",
    "RelayLetters",
    "RelayRedriver",
    "ReleaseReport",
    "Sender",
    "purge_relay_letter",
    "redrive_relay_letters",
    "release_relay_letters",
]

log = structlog.get_logger(__name__)

RELAY_STAGE: Final[Stage] = "relay"
Sender = Callable[[Sequence[Event]], Awaitable[Sequence[PublishedRecord]]]

_PURGED = """
SELECT event_id FROM dead_letters
 WHERE stage = 'relay' AND status = 'purged' AND event_id = ANY($1::uuid[])"""


@dataclass(slots=True)
class ReleaseReport:
    """Letters published again (and marked reprocessed), and letters parked again."""

    published: list[int] = field(default_factory=list)
    reparked: list[int] = field(default_factory=list)
    records: list[PublishedRecord] = field(default_factory=list)


class RelayLetters:
    """The relay's view of the dead-letter queue (``DeadLetterStore`` plus one query of its own:
    the events whose relay letter was purged, which a republish must skip)."""

    def __init__(self, dlq: DeadLetterStore, pool: asyncpg.Pool) -> None:
        self.dlq = dlq
        self._pool = pool

    async def blocked(self) -> Blockers:
        """The flags blocked at the relay and the version each is blocked from: only events at or
        after it are held (:mod:`events.deadletters.ordering`)."""
        return await self.dlq.blockers(RELAY_STAGE)

    async def purged(self, event_ids: Collection[UUID]) -> set[UUID]:
        if not event_ids:
            return set()
        try:
            rows = await self._pool.fetch(_PURGED, list(event_ids))
        except CONNECTION_ERRORS as e:
            raise StoreUnavailable(f"dead letters unreadable, Postgres unreachable: {e}") from e
        return {r["event_id"] for r in rows}

    async def park_poison(self, event: Event, error: BaseException, *, attempts: int = 1) -> DeadLetter:
        letter = await self.dlq.park(NewDeadLetter.for_event(RELAY_STAGE, event, error, attempts=attempts))
        log.error(
            "relay.dead_lettered", letter=letter.id, flag_key=event.flag_key, version=event.version,
            error_class=letter.error_class, error=letter.error_message,
        )
        return letter

    async def park_held(self, event: Event) -> DeadLetter:
        letter = await self.dlq.park(NewDeadLetter.waiting(RELAY_STAGE, event))
        log.info("relay.held_behind_dead_letter", letter=letter.id, flag_key=event.flag_key,
                 version=event.version)
        return letter

    async def release(self, send: Sender, *, flags: Collection[str] | None = None) -> ReleaseReport:
        """Publish again what nothing blocks any more, flag by flag in version order."""
        report = ReleaseReport()
        stuck = Blockers()
        while True:
            letters = [
                letter
                for letter in await self.dlq.releasable(RELAY_STAGE, limit=200)
                if letter.flag_key not in stuck and (flags is None or letter.flag_key in flags)
                and letter.id not in report.published
            ]
            if not letters:
                return report
            await self.release_in_order(letters, send, report, stuck)

    async def release_in_order(
        self, letters: Sequence[DeadLetter], send: Sender, report: ReleaseReport, stuck: Blockers
    ) -> None:
        """Publish ``letters`` in the order given; a letter that fails for good holds its flag's
        later ones (the ordering rule: ``stuck`` gains the flag from that letter's version)."""
        for letter in letters:
            if stuck.holds(letter.flag_key, letter.version):
                continue
            if not await self.release_one(letter, send, report):
                stuck.block(letter.flag_key, letter.version)

    async def release_one(self, letter: DeadLetter, send: Sender, report: ReleaseReport) -> bool:
        """Publish one freed letter's event; False when it failed permanently (parked again)."""
        if letter.event_body is None:
            log.error("relay.letter_without_event", letter=letter.id)
            return False
        event = Event.from_json(letter.event_body)
        try:
            records = await send([event])
        except Exception as e:
            if classify(e) == "retriable":
                raise
            reparked = await repark(self.dlq, letter, e)
            report.reparked.append(reparked.id)
            return False
        report.records.extend(records)
        await self._mark_reprocessed(letter.id)
        report.published.append(letter.id)
        log.info("relay.letter_released", letter=letter.id, flag_key=event.flag_key, version=event.version,
                 waiting=letter.error_class == WAITING)
        return True

    async def _mark_reprocessed(self, letter_id: int) -> None:
        try:
            await self.dlq.mark_reprocessed(letter_id)
        except DeadLetterResolved:
            log.info("relay.letter_already_released", letter=letter_id)  # another process did it


class RelayRedriver:
    """The relay stage's :class:`events.deadletters.operations.Redriver`: publishes at once what an operator's
    redrive freed (register it with ``RedriverRegistry.register("relay", ...)`` in the API/CLI).
    Letters come in (flag, version) order; a flag stops at its first permanent failure; a
    retriable failure propagates (the letters stay redriven; the relay process releases them)."""

    def __init__(self, letters: RelayLetters, publisher: EventPublisher) -> None:
        self._letters = letters
        self._send = _publish_with(publisher)

    async def __call__(self, letters: Sequence[DeadLetter]) -> int:
        report = ReleaseReport()
        await self._letters.release_in_order(letters, self._send, report, Blockers())
        return len(report.published)


def _publish_with(publisher: EventPublisher) -> Sender:
    async def send(events: Sequence[Event]) -> Sequence[PublishedRecord]:
        return await publisher.publish(events)

    return send


async def release_relay_letters(
    letters: RelayLetters, publisher: EventPublisher, *, flags: Collection[str] | None = None
) -> ReleaseReport:
    """Publish redriven letters and letters no longer held, in version order per flag."""
    return await letters.release(_publish_with(publisher), flags=flags)


async def redrive_relay_letters(
    letters: RelayLetters,
    publisher: EventPublisher,
    *,
    flag_key: str | None = None,
    letter_ids: Sequence[int] = (),
    by: str,
    reason: str | None = None,
) -> ReleaseReport:
    """Redrive the relay letters of ``flag_key`` (all of them) or ``letter_ids``, and publish them
    in version order. A retriable failure propagates (the letters stay redriven; the relay
    process publishes them once Kafka is back)."""
    if flag_key is None and not letter_ids:
        raise ValueError("name a flag or letter ids to redrive")
    flags: set[str] = set()
    if flag_key is not None:
        relay_letters_of_flag = DeadLetterFilter(stage=RELAY_STAGE, flag_key=flag_key)
        await letters.dlq.mark_redriven_matching(relay_letters_of_flag, by, reason)
        flags.add(flag_key)
    for letter_id in letter_ids:
        letter = await letters.dlq.get(letter_id)
        if letter.stage != RELAY_STAGE:
            raise ValueError(f"dead letter {letter_id} is not a relay letter ({letter.stage})")
        if letter.status == "parked":
            await letters.dlq.mark_redriven(letter_id, by, reason)
        if letter.flag_key is not None:
            flags.add(letter.flag_key)
    return await release_relay_letters(letters, publisher, flags=flags)


async def purge_relay_letter(
    letters: RelayLetters, publisher: EventPublisher, letter_id: int, *, by: str, reason: str
) -> ReleaseReport:
    """Purge a relay letter (its event is never published), then release its flag's held events."""
    letter = await letters.dlq.mark_purged(letter_id, by, reason)
    flags = {letter.flag_key} if letter.flag_key is not None else set()
    return await release_relay_letters(letters, publisher, flags=flags)
