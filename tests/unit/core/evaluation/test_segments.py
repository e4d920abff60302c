"""in_segment: included keys, then excluded keys, then the segment's condition."""

from __future__ import annotations

from typing import Any

from core.evaluation import Reason, evaluate
from core.model import Segment

from .builders import NOW, clause, rule_flag


def segment(key: str, **fields: Any) -> Segment:
    return Segment.model_validate({"key": key, **fields})


SEGMENTS = {
    "beta": segment(
        "beta", included=["alice"], excluded=["bob"], when=clause("email", "ends_with", "@corp.com")
    ),
    "plain": segment("plain", included=["carol"]),
    "gone": segment("gone", included=["alice"], archived=True),
    "nested": segment("nested", when={"attribute": "targetingKey", "op": "in_segment", "values": ["plain"]}),
    "loop-a": segment("loop-a", when={"attribute": "targetingKey", "op": "in_segment", "values": ["loop-b"]}),
    "loop-b": segment("loop-b", when={"attribute": "targetingKey", "op": "in_segment", "values": ["loop-a"]}),
}


def in_segment(*keys: str, attribute: str = "targetingKey") -> Any:
    return rule_flag({"attribute": attribute, "op": "in_segment", "values": list(keys)}, segments=SEGMENTS)


def matched(flag: Any, context: dict[str, Any]) -> bool:
    result = evaluate(flag, context, NOW)
    assert result.error_code is None
    return result.reason is Reason.TARGETING_MATCH


def test_in_segment__included_key__matches_even_if_condition_fails() -> None:
    assert matched(in_segment("beta"), {"targetingKey": "alice", "email": "a@gmail.com"})


def test_in_segment__excluded_key__does_not_match_even_if_condition_holds() -> None:
    assert not matched(in_segment("beta"), {"targetingKey": "bob", "email": "bob@corp.com"})


def test_in_segment__other_key__decided_by_condition() -> None:
    flag = in_segment("beta")
    assert matched(flag, {"targetingKey": "dave", "email": "dave@corp.com"})
    assert not matched(flag, {"targetingKey": "dave", "email": "dave@gmail.com"})
    assert matched(flag, {"email": "nokey@corp.com"})


def test_in_segment__no_condition__only_included_keys() -> None:
    flag = in_segment("plain")
    assert matched(flag, {"targetingKey": "carol"})
    assert not matched(flag, {"targetingKey": "dave"})


def test_in_segment__any_of_several_segments__matches() -> None:
    assert matched(in_segment("plain", "beta"), {"targetingKey": "alice"})


def test_in_segment__unknown_or_archived_segment__never_matches() -> None:
    assert not matched(in_segment("missing"), {"targetingKey": "alice"})
    assert not matched(in_segment("gone"), {"targetingKey": "alice"})


def test_in_segment__nested_segment__resolved() -> None:
    assert matched(in_segment("nested"), {"targetingKey": "carol"})


def test_in_segment__segment_cycle__never_matches_and_never_recurses() -> None:
    assert not matched(in_segment("loop-a"), {"targetingKey": "alice"})


def test_in_segment__other_key_attribute__lists_checked_against_it() -> None:
    flag = in_segment("plain", attribute="user.id")
    assert matched(flag, {"user": {"id": "carol"}})
    assert not matched(flag, {"targetingKey": "carol"})


def test_in_segment__same_segment_twice__compiled_once_and_shared() -> None:
    from core.evaluation.conditions import compile_condition
    from core.model import AnyOf

    cache: dict[str, Any] = {}
    when = AnyOf.model_validate({"any": [clause("targetingKey", "in_segment", "plain")] * 2})
    compile_condition(when, SEGMENTS, cache)
    assert len(cache) == 1


def test_groups__all_any_not__combine_clauses() -> None:
    when = {
        "all": [
            {"any": [clause("country", "eq", "US"), clause("country", "eq", "CA")]},
            {"not": clause("email", "ends_with", "@test.com")},
        ]
    }
    flag = rule_flag(when)
    assert matched(flag, {"country": "CA", "email": "a@b.com"})
    assert not matched(flag, {"country": "CA", "email": "a@test.com"})
    assert not matched(flag, {"country": "FR", "email": "a@b.com"})
    assert matched(flag, {"country": "US"})


def test_groups__single_member_groups__behave_like_the_member() -> None:
    flag = rule_flag({"all": [{"any": [clause("country", "eq", "US")]}]})
    assert matched(flag, {"country": "US"})
    assert not matched(flag, {"country": "FR"})


def test_compile_condition__unknown_condition_type__never_matches() -> None:
    from core.evaluation.conditions import compile_condition

    assert compile_condition("not a condition", {})({}, NOW) is False  # type: ignore[arg-type]


def test_in_segment__integer_key__matched_as_decimal_text() -> None:
    flag = rule_flag(
        clause("id", "in_segment", "numbers"), segments={"numbers": segment("numbers", included=["7"])}
    )
    assert matched(flag, {"id": 7})
    assert not matched(flag, {"id": 7.0})
