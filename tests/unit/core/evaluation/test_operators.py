"""One row per operator and input kind: a match, a non-match, wrong types, missing attributes."""

from __future__ import annotations

from typing import Any

import pytest

from core.evaluation import Reason, evaluate
from core.evaluation.operators import build_clause_matcher
from core.evaluation.patterns import compile_pattern
from core.model import Clause

from .builders import NOW, clause, rule_flag

MISSING: dict[str, Any] = {}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # eq / neq
    ("eq string", clause("plan", "eq", "pro"), {"plan": "pro"}, True),
    ("eq other string", clause("plan", "eq", "pro"), {"plan": "free"}, False),
    ("eq number int/float", clause("age", "eq", 30), {"age": 30.0}, True),
    ("eq bool is not number", clause("n", "eq", 1), {"n": True}, False),
    ("eq bool", clause("beta", "eq", True), {"beta": True}, True),
    ("eq number is not bool", clause("beta", "eq", True), {"beta": 1}, False),
    ("eq string is not number", clause("age", "eq", 30), {"age": "30"}, False),
    ("eq array attribute", clause("plan", "eq", "pro"), {"plan": ["pro"]}, False),
    ("eq object value never matches", clause("plan", "eq", {"a": 1}), {"plan": {"a": 1}}, False),
    ("eq missing", clause("plan", "eq", "pro"), MISSING, False),
    ("eq null", clause("plan", "eq", "pro"), {"plan": None}, False),
    ("eq case-insensitive", clause("plan", "eq", "PRO", ci=True), {"plan": "pro"}, True),
    ("eq case-insensitive mixed", clause("plan", "eq", "PRO", 3, ci=True), {"plan": "Pro"}, True),
    ("eq case-insensitive non-string", clause("plan", "eq", "PRO", ci=True), {"plan": 3}, False),
    ("eq mixed values, dict attribute", clause("x", "eq", "a", 1), {"x": {}}, False),
    ("neq other", clause("plan", "neq", "pro"), {"plan": "free"}, True),
    ("neq same", clause("plan", "neq", "pro"), {"plan": "pro"}, False),
    ("neq missing", clause("plan", "neq", "pro"), MISSING, False),
    ("neq wrong type", clause("plan", "neq", "pro"), {"plan": ["x"]}, False),
    # in / not_in
    ("in", clause("country", "in", "US", "CA"), {"country": "CA"}, True),
    ("in miss", clause("country", "in", "US", "CA"), {"country": "FR"}, False),
    ("in numbers", clause("tier", "in", 1, 2), {"tier": 2}, True),
    ("in missing", clause("country", "in", "US"), MISSING, False),
    ("in unhashable attribute", clause("country", "in", "US", 1), {"country": [1]}, False),
    ("not_in", clause("country", "not_in", "US"), {"country": "FR"}, True),
    ("not_in member", clause("country", "not_in", "US"), {"country": "US"}, False),
    ("not_in missing", clause("country", "not_in", "US"), MISSING, False),
    ("not_in number", clause("tier", "not_in", 1), {"tier": 2}, True),
    # strings
    ("contains", clause("email", "contains", "@corp"), {"email": "a@corp.com"}, True),
    ("contains miss", clause("email", "contains", "@corp"), {"email": "a@x.com"}, False),
    ("contains ci", clause("email", "contains", "@CORP", ci=True), {"email": "a@corp.com"}, True),
    ("contains wrong type", clause("email", "contains", "1"), {"email": 123}, False),
    ("contains non-string values", clause("email", "contains", 1), {"email": "1"}, False),
    ("not_contains", clause("email", "not_contains", "@corp"), {"email": "a@x.com"}, True),
    ("not_contains hit", clause("email", "not_contains", "@corp"), {"email": "a@corp.com"}, False),
    ("not_contains missing", clause("email", "not_contains", "@corp"), MISSING, False),
    ("not_contains non-string values", clause("email", "not_contains", 1), {"email": "x"}, False),
    ("starts_with", clause("path", "starts_with", "/admin", "/ops"), {"path": "/ops/x"}, True),
    ("starts_with miss", clause("path", "starts_with", "/admin"), {"path": "/home"}, False),
    ("starts_with ci", clause("path", "starts_with", "/ADMIN", ci=True), {"path": "/admin/x"}, True),
    ("starts_with wrong type", clause("path", "starts_with", "/a"), {"path": None}, False),
    ("starts_with non-string values", clause("path", "starts_with", 1), {"path": "1"}, False),
    ("ends_with", clause("email", "ends_with", "@test.com"), {"email": "a@test.com"}, True),
    ("ends_with miss", clause("email", "ends_with", "@test.com"), {"email": "a@b.com"}, False),
    ("ends_with wrong type", clause("email", "ends_with", "m"), {"email": {"m": 1}}, False),
    ("ends_with non-string values", clause("email", "ends_with", 1), {"email": "1"}, False),
    # matches
    ("matches", clause("email", "matches", r"^qa\+.*@corp\.com$"), {"email": "qa+1@corp.com"}, True),
    ("matches miss", clause("email", "matches", r"^qa\+"), {"email": "dev@corp.com"}, False),
    ("matches second pattern", clause("email", "matches", "^x", "corp"), {"email": "a@corp"}, True),
    ("matches none of two", clause("email", "matches", "^x", "^y"), {"email": "a@corp"}, False),
    ("matches two, wrong type", clause("email", "matches", "^x", "^y"), {"email": ["x"]}, False),
    ("matches ci", clause("name", "matches", "^ALICE$", ci=True), {"name": "alice"}, True),
    ("matches unicode", clause("name", "matches", "é+$"), {"name": "café"}, True),
    ("matches wrong type", clause("email", "matches", ".*"), {"email": 5}, False),
    ("matches missing", clause("email", "matches", ".*"), MISSING, False),
    # numbers
    ("lt", clause("age", "lt", 18), {"age": 17}, True),
    ("lt equal", clause("age", "lt", 18), {"age": 18}, False),
    ("lte", clause("age", "lte", 18), {"age": 18}, True),
    ("gt", clause("age", "gt", 18.5), {"age": 19}, True),
    ("gt smaller", clause("age", "gt", 18.5), {"age": 18}, False),
    ("gte", clause("age", "gte", 18), {"age": 18.0}, True),
    ("gt string number", clause("age", "gt", 18), {"age": "19"}, False),
    ("gt bool", clause("age", "gt", 0), {"age": True}, False),
    ("gt nan", clause("age", "gt", 0), {"age": float("nan")}, False),
    ("lt missing", clause("age", "lt", 18), MISSING, False),
    ("between", clause("score", "between", 10, 20), {"score": 10}, True),
    ("between upper bound", clause("score", "between", 10, 20), {"score": 20}, True),
    ("between outside", clause("score", "between", 10, 20), {"score": 20.5}, False),
    ("between reversed bounds", clause("score", "between", 20, 10), {"score": 15}, False),
    ("between wrong type", clause("score", "between", 10, 20), {"score": "15"}, False),
    # dates
    ("before", clause("signup", "before", "2026-01-01T00:00:00Z"), {"signup": "2025-12-31T23:59:59Z"}, True),
    (
        "before later",
        clause("signup", "before", "2026-01-01T00:00:00Z"),
        {"signup": "2026-01-01T00:00:00Z"},
        False,
    ),
    (
        "before offset",
        clause("signup", "before", "2026-01-01T00:00:00Z"),
        {"signup": "2026-01-01T00:30:00+01:00"},
        True,
    ),
    (
        "before epoch seconds",
        clause("signup", "before", "2026-01-01T00:00:00Z"),
        {"signup": 1_700_000_000},
        True,
    ),
    (
        "before naive",
        clause("signup", "before", "2026-01-01T00:00:00Z"),
        {"signup": "2025-01-01T00:00:00"},
        False,
    ),
    ("before garbage", clause("signup", "before", "2026-01-01T00:00:00Z"), {"signup": "yesterday"}, False),
    (
        "before too long",
        clause("signup", "before", "2026-01-01T00:00:00Z"),
        {"signup": "2025-01-01" + " " * 80},
        False,
    ),
    ("before huge epoch", clause("signup", "before", "2026-01-01T00:00:00Z"), {"signup": 1e300}, False),
    ("before bool", clause("signup", "before", "2026-01-01T00:00:00Z"), {"signup": True}, False),
    ("before missing", clause("signup", "before", "2026-01-01T00:00:00Z"), MISSING, False),
    ("after", clause("signup", "after", "2026-01-01T00:00:00Z"), {"signup": "2026-06-01T00:00:00Z"}, True),
    (
        "after earlier",
        clause("signup", "after", "2026-01-01T00:00:00Z"),
        {"signup": "2025-06-01T00:00:00Z"},
        False,
    ),
    ("after $now", clause("$now", "after", "2026-11-01T00:00:00Z"), MISSING, True),
    ("before $now", clause("$now", "before", "2026-11-01T00:00:00Z"), MISSING, False),
    (
        "between_dates",
        clause("d", "between_dates", "2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"),
        {"d": "2026-05-05T00:00:00Z"},
        True,
    ),
    (
        "between_dates outside",
        clause("d", "between_dates", "2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"),
        {"d": "2027-05-05T00:00:00Z"},
        False,
    ),
    (
        "between_dates $now",
        clause("$now", "between_dates", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        MISSING,
        True,
    ),
    # semver
    ("semver_eq", clause("v", "semver_eq", "2.1.0"), {"v": "v2.1"}, True),
    ("semver_eq build ignored", clause("v", "semver_eq", "2.1.0"), {"v": "2.1.0+b7"}, True),
    ("semver_eq differs", clause("v", "semver_eq", "2.1.0"), {"v": "2.1.1"}, False),
    ("semver_lt", clause("v", "semver_lt", "2"), {"v": "1.9.9"}, True),
    ("semver_lt prerelease", clause("v", "semver_lt", "2.0.0"), {"v": "2.0.0-rc.1"}, True),
    ("semver_gt", clause("v", "semver_gt", "1.2.3"), {"v": "1.10.0"}, True),
    ("semver_gt equal", clause("v", "semver_gt", "1.2.3"), {"v": "1.2.3"}, False),
    ("semver garbage attribute", clause("v", "semver_gt", "1.2.3"), {"v": "latest"}, False),
    ("semver number attribute", clause("v", "semver_gt", "1.2.3"), {"v": 2}, True),  # "2", as flagd
    ("semver garbage value", clause("v", "semver_eq", "not-a-version"), {"v": "1.0.0"}, False),
    ("semver non-string value", clause("v", "semver_eq", 1), {"v": "1.0.0"}, False),
    # arrays
    ("contains_any", clause("groups", "contains_any", "beta", "staff"), {"groups": ["users", "beta"]}, True),
    ("contains_any none", clause("groups", "contains_any", "beta"), {"groups": ["users"]}, False),
    (
        "contains_any unhashable items",
        clause("groups", "contains_any", "beta"),
        {"groups": [[1], {"a": 1}, "beta"]},
        True,
    ),
    ("contains_any unhashable no hit", clause("groups", "contains_any", "beta"), {"groups": [[1]]}, False),
    ("contains_any ci", clause("groups", "contains_any", "BETA", ci=True), {"groups": ["beta"]}, True),
    ("contains_any numbers", clause("ids", "contains_any", 3, 4), {"ids": [1, 4]}, True),
    ("contains_any bool is not 1", clause("ids", "contains_any", 1), {"ids": [True]}, False),
    ("contains_any string attribute", clause("groups", "contains_any", "b"), {"groups": "beta"}, False),
    ("contains_all", clause("groups", "contains_all", "a", "b"), {"groups": ["b", "c", "a"]}, True),
    ("contains_all partial", clause("groups", "contains_all", "a", "b"), {"groups": ["a"]}, False),
    ("contains_all unhashable items", clause("groups", "contains_all", "a"), {"groups": [{}, "a"]}, True),
    ("contains_all ci", clause("groups", "contains_all", "A", ci=True), {"groups": ["a"]}, True),
    ("contains_all numbers", clause("ids", "contains_all", 1, 2), {"ids": [2, 1]}, True),
    ("contains_all missing", clause("groups", "contains_all", "a"), MISSING, False),
    # exists
    ("exists", clause("plan", "exists"), {"plan": ""}, True),
    ("exists missing", clause("plan", "exists"), MISSING, False),
    ("exists null", clause("plan", "exists"), {"plan": None}, False),
    ("not_exists", clause("plan", "not_exists"), MISSING, True),
    ("not_exists present", clause("plan", "not_exists"), {"plan": 0}, False),
    # dotted paths
    ("path", clause("user.address.country", "eq", "FR"), {"user": {"address": {"country": "FR"}}}, True),
    ("path literal key wins", clause("a.b", "eq", 1), {"a.b": 1, "a": {"b": 2}}, True),
    ("path through non-object", clause("user.address.country", "eq", "FR"), {"user": "FR"}, False),
    ("path missing", clause("user.address.country", "eq", "FR"), {"user": {}}, False),
    (
        "path date",
        clause("u.signup", "after", "2020-01-01T00:00:00Z"),
        {"u": {"signup": "2021-01-01T00:00:00Z"}},
        True,
    ),
]


@pytest.mark.parametrize(("when", "context", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_clause__context__matches_as_documented(
    when: dict[str, Any], context: dict[str, Any], expected: bool
) -> None:
    result = evaluate(rule_flag(when), {"targetingKey": "k", **context}, NOW)
    assert result.error_code is None
    assert (result.reason is Reason.TARGETING_MATCH) is expected
    assert result.variation == ("on" if expected else "off")


def test_matches__invalid_pattern__never_matches_and_never_raises() -> None:
    matcher = build_clause_matcher(construct("matches", "(unclosed", attribute="email"))
    assert matcher({"email": "(unclosed"}, NOW) is False
    assert compile_pattern("(unclosed", False) is None


def construct(op: str, *values: Any, attribute: str = "x") -> Clause:
    """A clause that skipped validation, as a corrupt read model could hold."""
    from core.model import Operator

    return Clause.model_construct(attribute=attribute, op=Operator(op), values=values, case_insensitive=False)


@pytest.mark.parametrize(
    "bad",
    [
        construct("lt", "ten"),
        construct("lte", None),
        construct("gt"),
        construct("gte", "1"),
        construct("between", 1),
        construct("between", "a", "b"),
        construct("before", "not a date"),
        construct("after", 5),
        construct("after"),
        construct("between_dates", "2026-01-01T00:00:00Z"),
        construct("before", "2026-01-01T00:00:00"),
        construct("semver_lt"),
        construct("matches", 5),
        construct("contains"),
        construct("in_segment", "x"),
    ],
    ids=lambda c: f"{c.op.value}{list(c.values)}",
)
def test_clause__unusable_values__compiles_to_never_matching(bad: Clause) -> None:
    from core.evaluation.conditions import compile_condition

    matcher = compile_condition(bad, {})
    for context in ({"x": 5}, {"x": "2025-01-01T00:00:00Z"}, {"x": "1.0.0"}, {"x": "ten"}, {}):
        assert matcher(context, NOW) is False


def test_build_clause_matcher__segment_clause_without_segments__never_matches() -> None:
    assert build_clause_matcher(construct("in_segment", "seg"))({"x": "seg"}, NOW) is False


def test_between__three_values__never_matches() -> None:
    assert build_clause_matcher(construct("between", 1, 2, 3))({"x": 2}, NOW) is False


PLAIN = [c for c in CASES if not c[1]["attribute"].startswith("$")]
NESTABLE = [c for c in PLAIN if "a.b" not in c[2]]  # a literal dotted key is only read at the top level


@pytest.mark.parametrize(("when", "context", "expected"), [c[1:] for c in PLAIN], ids=[c[0] for c in PLAIN])
def test_clause__fast_and_general_paths__agree(
    when: dict[str, Any], context: dict[str, Any], expected: bool
) -> None:
    from core.evaluation.operators import build_general_matcher

    parsed = Clause.model_validate(when)
    assert build_clause_matcher(parsed)(context, NOW) is expected
    if parsed.op.value not in ("before", "after", "between_dates"):
        assert build_general_matcher(parsed)(context, NOW) is expected


@pytest.mark.parametrize(
    ("when", "context", "expected"), [c[1:] for c in NESTABLE], ids=[c[0] for c in NESTABLE]
)
def test_clause__attribute_nested_one_level_down__same_answer(
    when: dict[str, Any], context: dict[str, Any], expected: bool
) -> None:
    nested = {**when, "attribute": "wrapper." + when["attribute"]}
    assert rule_flag(nested).run({"wrapper": context}, NOW, None, ()).variation == (
        "on" if expected else "off"
    )
