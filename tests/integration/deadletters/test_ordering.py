"""The ordering rule: later events of a flag wait behind its dead letter, and are released in
version order once it is redriven (and processed again) or purged. Other flags keep flowing."""

from __future__ import annotations

import pytest

from core.errors import MalformedEvent
from events.deadletters import WAITING, DeadLetter, DeadLetterResolved, DeadLetterStore, NewDeadLetter
from tests.integration.deadletters._letters import a_letter, an_event

pytestmark = pytest.mark.integration


async def _poison_then_waiting(store: DeadLetterStore, flag: str = "checkout") -> list[DeadLetter]:
    """v3 fails for its own sake; v4 and v5 arrive while the flag is blocked and wait behind it."""
    blocker = await store.park(a_letter("projector", flag, 3))
    assert flag in await store.blocked_flags("projector")
    waiting = [await store.park(NewDeadLetter.waiting("projector", an_event(flag, v))) for v in (4, 5)]
    return [blocker, *waiting]


def _versions(letters: list[DeadLetter]) -> list[tuple[str | None, int | None]]:
    return [(lt.flag_key, lt.version) for lt in letters]


async def test_waiting__behind_a_blocker__nothing_released(store: DeadLetterStore) -> None:
    blocker, v4, v5 = await _poison_then_waiting(store)
    assert blocker.is_blocker and not blocker.is_waiting
    assert v4.is_waiting and v5.error_class == WAITING and not v4.is_blocker
    assert await store.releasable("projector") == []


async def test_redrive__blocker__released_with_waiting_in_version_order_then_unblocked(
    store: DeadLetterStore,
) -> None:
    blocker, v4, v5 = await _poison_then_waiting(store)
    await store.mark_redriven(blocker.id, by="ops-bob", reason="projector 1.4.2 reads it")
    released = await store.releasable("projector")
    assert [lt.id for lt in released] == [blocker.id, v4.id, v5.id]
    for letter in released:
        assert "checkout" in await store.blocked_flags("projector")
        await store.mark_reprocessed(letter.id)
    assert await store.blocked_flags("projector") == set()
    auto = await store.get(v4.id)
    assert (auto.status, auto.resolved_by, auto.reprocessed_at is not None) == ("redriven", "system", True)
    assert (await store.get(blocker.id)).resolved_by == "ops-bob"


async def test_purge__blocker__waiting_letters_released_without_an_operator(store: DeadLetterStore) -> None:
    blocker, v4, v5 = await _poison_then_waiting(store)
    await store.mark_purged(blocker.id, by="admin", reason="poison from a retired producer")
    assert [lt.id for lt in await store.releasable("projector")] == [v4.id, v5.id]


async def test_releasable__other_flags__flow_independently(store: DeadLetterStore) -> None:
    await _poison_then_waiting(store, "checkout")
    pricing_blocker, *_ = await _poison_then_waiting(store, "pricing")
    await store.mark_redriven(pricing_blocker.id, by="ops")
    released = await store.releasable("projector")
    assert _versions(released) == [("pricing", 3), ("pricing", 4), ("pricing", 5)]
    assert await store.releasable("relay") == []


async def test_park__waiting_letter_then_fails_for_real__becomes_the_blocker(store: DeadLetterStore) -> None:
    _, v4, _ = await _poison_then_waiting(store)
    failed = a_letter("projector", "checkout", 4, error=MalformedEvent("v4 is bad too"))
    again = await store.park(_with_event_id(failed, v4))
    assert again.id == v4.id
    assert again.is_blocker
    assert (again.error_class, again.attempts) == ("MalformedEvent", 1)


async def test_park__blocker_redelivered_while_blocked__keeps_its_error(store: DeadLetterStore) -> None:
    blocker, _, _ = await _poison_then_waiting(store)
    redelivered = NewDeadLetter.waiting("projector", an_event("checkout", 3))
    same = await store.park(_with_event_id(redelivered, blocker))
    assert same.id == blocker.id
    assert (same.error_class, same.error_message, same.attempts) == (
        blocker.error_class,
        blocker.error_message,
        blocker.attempts,
    )


async def test_releasable__redriven_letter_fails_again__new_blocker_holds_the_rest(
    store: DeadLetterStore,
) -> None:
    blocker, v4, v5 = await _poison_then_waiting(store)
    await store.mark_redriven(blocker.id, by="ops")
    first, *_ = await store.releasable("projector")
    assert first.id == blocker.id
    # processing v3 again fails permanently: the stage parks it again and records the attempt
    failed = a_letter("projector", "checkout", 3, error=MalformedEvent("still unreadable"))
    new_blocker = await store.park(_with_event_id(failed, blocker))
    await store.mark_reprocessed(blocker.id)
    assert new_blocker.id != blocker.id and new_blocker.is_blocker
    assert await store.releasable("projector") == []
    assert await store.blocked_flags("projector") == {"checkout"}
    await store.mark_redriven(new_blocker.id, by="ops")
    assert [lt.id for lt in await store.releasable("projector")] == [new_blocker.id, v4.id, v5.id]


async def test_mark_reprocessed__blocker_or_done_letter__refused(store: DeadLetterStore) -> None:
    blocker, v4, _ = await _poison_then_waiting(store)
    with pytest.raises(DeadLetterResolved):
        await store.mark_reprocessed(blocker.id)
    await store.mark_purged(blocker.id, by="ops", reason="gone")
    await store.mark_reprocessed(v4.id)
    with pytest.raises(DeadLetterResolved):
        await store.mark_reprocessed(v4.id)


def _fields(letter: NewDeadLetter) -> dict[str, object]:
    return {name: getattr(letter, name) for name in letter.__dataclass_fields__}


def _with_event_id(letter: NewDeadLetter, of: DeadLetter) -> NewDeadLetter:
    """The same event as ``of`` (the builders make a new event id each time)."""
    return NewDeadLetter(**{**_fields(letter), "event_id": of.event_id})  # type: ignore[arg-type]


async def test_releasable__waiting_letter_below_the_blocker__released_the_rest_waits(
    store: DeadLetterStore,
) -> None:
    """The rule in SQL matches ``Blockers``: a waiting letter below the flag's blocker may pass."""
    early = await store.park(NewDeadLetter.waiting("projector", an_event("checkout", 2)))
    await store.park(a_letter("projector", "checkout", 3))
    await store.park(NewDeadLetter.waiting("projector", an_event("checkout", 4)))

    assert [lt.id for lt in await store.releasable("projector")] == [early.id]
    assert (await store.blockers("projector")).floor("checkout") == 2
