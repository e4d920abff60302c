"""The ordering rule of dead letters (events.deadletters.ordering.Blockers), the one every stage asks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.deadletters import WAITING, Blockers, DeadLetter


def _letter(flag_key: str | None, version: int | None, *, error_class: str = "MalformedEvent") -> DeadLetter:
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    return DeadLetter(
        id=1, stage="projector", flag_key=flag_key, version=version, event_id=None, event_body=None,
        raw_record=None, error_class=error_class, error_message="m", attempts=1, first_failed_at=at,
        last_failed_at=at, kafka=None, status="parked", resolved_at=None, resolved_by=None,
        resolve_reason=None, reprocessed_at=None,
    )


@pytest.mark.parametrize(("version", "held"), [(1, False), (2, False), (3, True), (4, True), (None, True)])
def test_holds__flag_blocked_at_v3__only_v3_and_later_wait(version: int | None, held: bool) -> None:
    blockers = Blockers({"checkout": 3})
    assert blockers.holds("checkout", version) is held


def test_holds__other_flag_or_no_flag__never_held() -> None:
    blockers = Blockers({"checkout": 3})
    assert not blockers.holds("pricing", 9)
    assert not blockers.holds(None, 9)


def test_block__unknown_version__every_event_of_the_flag_waits() -> None:
    blockers = Blockers()
    blockers.block("checkout", None)
    assert blockers.holds("checkout", 1) and blockers.floor("checkout") == 0


def test_block__twice__the_lower_version_wins() -> None:
    blockers = Blockers({"checkout": 5})
    blockers.block("checkout", 3)
    blockers.block("checkout", 7)
    assert blockers.floor("checkout") == 3
    assert not blockers.holds("checkout", 2) and blockers.holds("checkout", 4)


def test_of_letters__blocker_and_waiting__floor_is_the_lowest_version() -> None:
    letters = [_letter("a", 4, error_class=WAITING), _letter("a", 3), _letter("b", None)]
    blockers = Blockers.of_letters(letters)
    assert (blockers.floor("a"), blockers.floor("b"), blockers.floor("c")) == (3, 0, None)
    assert list(blockers) == ["a", "b"] and len(blockers) == 2 and "a" in blockers
    assert blockers.flags() == {"a", "b"}


def test_of_letters__letter_without_flag__blocks_nothing() -> None:
    assert len(Blockers.of_letters([_letter(None, 2)])) == 0
