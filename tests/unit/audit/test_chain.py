"""ChainTracker: the incremental chain check over an interleaved log."""

from __future__ import annotations

import json

import orjson

from events.audit.chain import ChainTracker, Step, is_intact, parse_fields
from tests.integration.audit.support import apply_commands, checkout_story


def _raws(key: str = "new-checkout") -> list[bytes]:
    events, _ = apply_commands(key, checkout_story(key))
    return [e.to_json().encode() for e in events]


def _check_all(tracker: ChainTracker, raws: list[bytes]) -> list[Step]:
    return [tracker.check(parse_fields(r), raw=r).step for r in raws]


def test_tracker__two_streams_interleaved__all_ok() -> None:
    a, b = _raws("flag-a"), _raws("flag-b")
    tracker = ChainTracker()

    steps = _check_all(tracker, [r for pair in zip(a, b, strict=True) for r in pair])

    assert steps == [Step.OK] * 8
    assert tracker.last["flag-a"][0] == 4 and tracker.breaks == 0


def test_tracker__last_event_redelivered__counted_not_broken() -> None:
    raws = _raws()
    tracker = ChainTracker()

    steps = _check_all(tracker, [*raws[:3], raws[2], raws[1], raws[3]])

    assert steps == [Step.OK, Step.OK, Step.OK, Step.REDELIVERY, Step.OLDER_DUPLICATE, Step.OK]
    assert (tracker.redeliveries, tracker.older_duplicates, tracker.breaks) == (1, 1, 0)


def test_tracker__version_skipped__gap_names_the_missing_version() -> None:
    raws = _raws()
    tracker = ChainTracker()

    _check_all(tracker, [raws[0], raws[2]])
    result = tracker.check(parse_fields(raws[3]), raw=raws[3])

    assert result.step is Step.OK  # the check resumes after a break instead of cascading
    assert tracker.breaks == 1


def test_tracker__gap__breach_detail() -> None:
    raws = _raws()
    tracker = ChainTracker()
    tracker.check(parse_fields(raws[0]))

    result = tracker.check(parse_fields(raws[2]))

    assert result.breach is not None and (result.breach.problem, result.breach.version) == ("gap", 2)


def test_tracker__content_altered__tampered() -> None:
    raws = _raws()
    forged = orjson.loads(raws[1])
    forged["reason"] = "nothing happened"
    tracker = ChainTracker()
    tracker.check(parse_fields(raws[0]))

    result = tracker.check(forged)

    assert result.breach is not None and (result.breach.problem, result.breach.version) == ("tampered", 2)


def test_tracker__event_of_another_chain__broken_link() -> None:
    mine, other = _raws("new-checkout"), _raws("new-checkout")  # same key, different event ids
    tracker = ChainTracker()
    tracker.check(parse_fields(mine[0]))

    result = tracker.check(parse_fields(other[1]))

    assert result.breach is not None and result.breach.problem == "broken_link"


def test_tracker__same_version_different_event__duplicate_breach() -> None:
    mine, other = _raws("new-checkout"), _raws("new-checkout")
    tracker = ChainTracker()
    tracker.check(parse_fields(mine[0]))

    result = tracker.check(parse_fields(other[0]))

    assert result.breach is not None and result.breach.problem == "duplicate"


def test_tracker__record_key_differs__wrong_stream() -> None:
    raw = _raws()[0]

    result = ChainTracker().check(parse_fields(raw), record_key="someone-else")

    assert result.breach is not None and result.breach.problem == "wrong_stream"


def test_tracker__not_json__unreadable() -> None:
    result = ChainTracker().check(parse_fields(b"{not json"), record_key="k")

    assert result.breach is not None and (result.breach.problem, result.breach.flag_key) == (
        "unreadable",
        "k",
    )


def test_tracker__partial_start__first_event_is_the_anchor() -> None:
    raws = _raws()

    steps = _check_all(ChainTracker(partial_start=True), raws[2:])

    assert steps == [Step.OK, Step.OK]


def test_is_intact__canonical_and_reformatted_text__both_intact() -> None:
    raw = _raws()[1]
    spaced = json.dumps(json.loads(raw), indent=2)

    assert is_intact(parse_fields(raw) or {}, raw)
    assert is_intact(parse_fields(spaced) or {}, spaced)


def test_is_intact__hash_member_text_altered__not_intact() -> None:
    raw = _raws()[1]
    altered = raw.replace(b'"actor":"alice"', b'"actor":"mallory"')

    assert not is_intact(parse_fields(altered) or {}, altered)
