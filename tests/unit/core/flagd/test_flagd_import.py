"""flagd documents imported and evaluated by our evaluator, against flagd's own documented answers.

Golden values come from flagd's conformance suite (open-feature/flagd-testbed, gherkin
``evaluation.feature`` / ``fractional.feature``, examples tagged ``@fractional-v2``: the current
bucketing), not from our own expectations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.evaluation import compile_environment
from core.flagd import FlagdUnsupported, import_flagd, parse_flagd

ENV = "production"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

CARDS = {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades", "wild": "wild"}
TESTBED: dict[str, Any] = {
    "flags": {
        "fractional-flag": {
            "state": "ENABLED",
            "variants": CARDS,
            "defaultVariant": "wild",
            "targeting": {
                "fractional": [
                    {"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
                    ["clubs", 25],
                    ["diamonds", 25],
                    ["hearts", 25],
                    ["spades", 25],
                ]
            },
        },
        "fractional-flag-shorthand": {
            "state": "ENABLED",
            "variants": {"heads": "heads", "tails": "tails", "draw": "draw"},
            "defaultVariant": "draw",
            "targeting": {"fractional": [["heads"], ["tails"]]},
        },
        "targeted-flag": {
            "state": "ENABLED",
            "variants": {"hi": "hi", "yes": "yes", "no": "no"},
            "defaultVariant": "no",
            "targeting": {
                "if": [
                    {"$ref": "is-company"},
                    "hi",
                    {"in": ["@other.com", {"var": "email"}]},
                    "yes",
                    None,
                ]
            },
        },
        "disabled-flag": {
            "state": "DISABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
        },
    },
    "$evaluators": {"is-company": {"ends_with": [{"var": "email"}, "@company.com"]}},
}


def _evaluate(document: dict[str, Any], key: str, context: dict[str, Any], now: datetime = NOW) -> Any:
    snapshot = compile_environment(((f, 1) for f in import_flagd(document, ENV)), ENV, {})
    return snapshot.evaluate(key, context, now)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("jack", "hearts"), ("queen", "spades"), ("ten", "clubs"), ("nine", "diamonds"), ("3", "clubs")],
)
def test_fractional__flagd_testbed_v2__same_bucket(name: str, expected: str) -> None:
    result = _evaluate(TESTBED, "fractional-flag", {"user": {"name": name}})

    assert (result.value, result.reason) == (expected, "SPLIT")


@pytest.mark.parametrize(("key", "expected"), [("jon@company.com", "heads"), ("jane@company.com", "tails")])
def test_fractional_shorthand__flagd_testbed__flag_key_plus_targeting_key(key: str, expected: str) -> None:
    assert _evaluate(TESTBED, "fractional-flag-shorthand", {"targetingKey": key}).value == expected


@pytest.mark.parametrize(
    ("email", "expected", "reason"),
    [
        ("ballmer@company.com", "hi", "TARGETING_MATCH"),
        ("x@other.com", "yes", "TARGETING_MATCH"),
        ("a@b.c", "no", "DEFAULT"),
    ],
)
def test_if_ref_in_ends_with__first_match_else_default_variant(
    email: str, expected: str, reason: str
) -> None:
    result = _evaluate(TESTBED, "targeted-flag", {"email": email})

    assert (result.value, result.reason) == (expected, reason)


def test_disabled__serves_default_variant_with_reason_disabled() -> None:
    result = _evaluate(TESTBED, "disabled-flag", {})

    assert (result.value, result.reason) == (False, "DISABLED")


def test_kinds__inferred_from_variant_values() -> None:
    kinds = {f.key: f.kind.value for f in import_flagd(TESTBED, ENV)}

    assert kinds == {
        "fractional-flag": "string",
        "fractional-flag-shorthand": "string",
        "targeted-flag": "string",
        "disabled-flag": "boolean",
    }


def _one(targeting: Any, **variants: Any) -> dict[str, Any]:
    spec = {"state": "ENABLED", "variants": variants or {"on": True, "off": False}, "defaultVariant": "off"}
    return {"flags": {"f": {**spec, "targeting": targeting}}}


@pytest.mark.parametrize(
    ("targeting", "context", "expected"),
    [
        ({"if": [{"sem_ver": [{"var": "v"}, ">=", "1.2.0"]}, "on", "off"]}, {"v": "1.10.0"}, True),
        ({"if": [{"sem_ver": [{"var": "v"}, ">=", "1.2.0"]}, "on", "off"]}, {"v": "1.1.9"}, False),
        ({"if": [{"sem_ver": [{"var": "v"}, "<=", "1.2.0"]}, "on", "off"]}, {"v": "1.2.0"}, True),
        ({"if": [{"sem_ver": [{"var": "v"}, "!=", "1.2.0"]}, "on", "off"]}, {"v": "1.2.0"}, False),
        (
            {
                "if": [
                    {"and": [{">": [{"var": "age"}, 17]}, {"!": {"==": [{"var": "c"}, "FR"]}}]},
                    "on",
                    "off",
                ]
            },
            {"age": 18, "c": "US"},
            True,
        ),
        (
            {"if": [{"or": [{"<": [{"var": "age"}, 3]}, {"in": [{"var": "c"}, ["FR", "DE"]]}]}, "on", "off"]},
            {"age": 9, "c": "DE"},
            True,
        ),
        ({"if": [{"starts_with": [{"var": "id"}, "abc"]}, "on", "off"]}, {"id": "xabc"}, False),
    ],
)
def test_conditions__translated_exactly(targeting: Any, context: dict[str, Any], expected: bool) -> None:
    assert _evaluate(_one(targeting), "f", context).value is expected


@pytest.mark.parametrize(
    ("op", "seconds", "at", "expected"),
    [
        (
            ">",
            1_767_225_600,
            1_767_225_600.5,
            False,
        ),  # flagd's timestamp is whole seconds: 1767225600 > t is false
        (">", 1_767_225_600, 1_767_225_601.0, True),
        (">=", 1_767_225_600, 1_767_225_600.0, True),
        ("<", 1_767_225_600, 1_767_225_599.9, True),
        ("<=", 1_767_225_600, 1_767_225_600.9, True),
        ("<=", 1_767_225_600, 1_767_225_601.0, False),
    ],
)
def test_flagd_timestamp__whole_seconds_like_flagd(op: str, seconds: int, at: float, expected: bool) -> None:
    document = _one({"if": [{op: [{"var": "$flagd.timestamp"}, seconds]}, "on", "off"]})

    assert _evaluate(document, "f", {}, datetime.fromtimestamp(at, UTC)).value is expected


@pytest.mark.parametrize(
    ("targeting", "path"),
    [
        (
            {"if": [{"sem_ver": [{"var": "v"}, "^", "1.2.0"]}, "on", "off"]},
            "$.flags.f.targeting.if[0].sem_ver[1]",
        ),
        ({"if": [{"merge": [1]}, "on", "off"]}, "$.flags.f.targeting.if[0].merge"),
        ({"if": [{"==": [{"var": ["a", 1]}, 1]}, "on", "off"]}, "$.flags.f.targeting.if[0]['=='][0].var"),
        ({"if": [{"$ref": "nope"}, "on"]}, "$.flags.f.targeting.if[0]['$ref']"),
        ({"if": [{"==": [{"var": "a"}, 1]}, "maybe"]}, "$.flags.f.targeting.if[1]"),
        ({"fractional": [{"var": "$flagd.flagKey"}, ["on", 1]]}, "$.flags.f.targeting.fractional[0]"),
        ({"fractional": [["on", -1]]}, "$.flags.f.targeting.fractional[0][1]"),
        ({"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, "on"]}, "$.flags.f.targeting.if[0]['=='][0].var"),
    ],
)
def test_unsupported__refused_with_json_path(targeting: Any, path: str) -> None:
    with pytest.raises(FlagdUnsupported) as refused:
        import_flagd(_one(targeting), ENV)

    assert refused.value.path == path
    assert refused.value.details == [{"path": path, "message": refused.value.details[0]["message"]}]


def test_metadata__flag_metadata_kept__document_metadata_merged_under_it() -> None:
    # flagd merges the flag set's metadata into each flag's; a key in both takes the flag's value.
    document = {
        "metadata": {"flagSetId": "shop", "version": "v1"},
        "flags": {
            "f": {"variants": {"a": 1}, "defaultVariant": "a", "metadata": {"team": "x", "version": 2}},
            "g": {"variants": {"a": 1}, "defaultVariant": "a"},
        },
    }

    f, g = import_flagd(document, ENV)

    assert f.metadata == {"flagSetId": "shop", "version": 2, "team": "x"}
    assert g.metadata == {"flagSetId": "shop", "version": "v1"}


def test_metadata__too_many_after_the_merge__refused_at_the_flag() -> None:
    document = {
        "metadata": {f"d{i}": i for i in range(20)},
        "flags": {
            "f": {"variants": {"a": 1}, "defaultVariant": "a", "metadata": {f"f{i}": i for i in range(20)}}
        },
    }

    with pytest.raises(FlagdUnsupported) as refused:
        import_flagd(document, ENV)

    assert refused.value.path == "$.flags.f"


@pytest.mark.parametrize("text", ["{", "[]", '{"flags": []}'])
def test_parse__not_a_flagd_document__refused(text: str) -> None:
    with pytest.raises(FlagdUnsupported):
        parse_flagd(text)
