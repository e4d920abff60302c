"""The ordering rule of dead letters, in one place: which events of a flag wait behind its blocker.

A flag is blocked at a stage from its *blocker's* version on: the lowest version among its
letters that still hold it (parked, blocker or waiting, and redriven but not yet processed again).
Only events at or above that version wait; the blocker's own event is a letter already, and what
came *before* it passes — after a Redis wipe, a rewind or a republish of the whole log, versions
1..n-1 of a flag blocked at n must still reach the read model (and the new log), not vanish
behind the letter. A letter whose version is unknown (a raw record that could not be read) holds
every event of its flag: nothing tells what comes after it.

Every stage uses :class:`Blockers`: the :class:`events.deadletters.gate.DeadLetterGate` (the
projector's screening and release), the relay's publishing and release path
(:mod:`events.relay.letters`), the projector's redriver (:mod:`projections.deadletters`), and
the store's ``releasable`` query, which states the same rule in SQL (a waiting or redriven letter
is released when no parked blocker of its flag lies at or below its version).
:func:`repark` is the one way every stage parks a released letter again when it fails again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

import structlog

from events.deadletters.models import DeadLetter, DeadLetterResolved, NewDeadLetter
from events.resilience.classify import describe_error

if TYPE_CHECKING:
    from events.deadletters.store import DeadLetterStore

__all__ = ["UNKNOWN_VERSION", "Blockers", "repark"]

UNKNOWN_VERSION: Final = 0
"""The floor of a flag blocked by a letter of unknown version: every event of the flag waits."""

log = structlog.get_logger(__name__)


class Blockers:
    """Per blocked flag, the lowest version that waits (its *floor*)."""

    __slots__ = ("_floors",)

    def __init__(self, floors: Mapping[str, int | None] | None = None) -> None:
        self._floors: dict[str, int] = {}
        for flag_key, version in (floors or {}).items():
            self.block(flag_key, version)

    def holds(self, flag_key: str | None, version: int | None) -> bool:
        """Whether the event ``(flag_key, version)`` must wait behind its flag's blocker."""
        if flag_key is None or flag_key not in self._floors:
            return False
        return version is None or version >= self._floors[flag_key]

    def block(self, flag_key: str | None, version: int | None) -> None:
        """``flag_key`` is blocked from ``version`` on (``None``: from its first event)."""
        if flag_key is None:
            return
        floor = UNKNOWN_VERSION if version is None else version
        self._floors[flag_key] = min(floor, self._floors.get(flag_key, floor))

    def floor(self, flag_key: str) -> int | None:
        """The lowest version of ``flag_key`` that waits; ``None`` when the flag is not blocked."""
        return self._floors.get(flag_key)

    def flags(self) -> set[str]:
        return set(self._floors)

    def __contains__(self, flag_key: object) -> bool:
        return flag_key in self._floors

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._floors))

    def __len__(self) -> int:
        return len(self._floors)

    def __repr__(self) -> str:
        return f"Blockers({self._floors!r})"

    @classmethod
    def of_letters(cls, letters: Iterable[DeadLetter]) -> Blockers:
        """The blockers that ``letters`` (those still holding their flags) make."""
        blockers = cls()
        for letter in letters:
            blockers.block(letter.flag_key, letter.version)
        return blockers


async def repark(store: DeadLetterStore, letter: DeadLetter, error: BaseException) -> DeadLetter:
    """Park a released ``letter`` again after ``error`` (a permanent failure), with its identity: a
    waiting letter becomes its flag's blocker in place; a redriven one gets a new parked letter
    (one more attempt) and is recorded as processed. Callers then hold the rest of its flag
    (:meth:`Blockers.block` at ``letter.version``)."""
    error_class, message = describe_error(error)
    parked = await store.park(
        NewDeadLetter(
            stage=letter.stage,
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
    if letter.status == "redriven" and parked.id != letter.id:
        try:
            await store.mark_reprocessed(letter.id)
        except DeadLetterResolved:
            log.info("deadletters.repark_already_processed", stage=letter.stage, letter=letter.id)
    log.warning(
        "deadletters.reparked",
        stage=letter.stage,
        letter=letter.id,
        parked=parked.id,
        flag=letter.flag_key,
        version=letter.version,
        error_class=error_class,
    )
    return parked
