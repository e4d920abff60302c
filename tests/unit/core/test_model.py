"""Structural validation of the flag model: each error names its field path and the reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.model import Clause, EnvironmentConfig, Flag, FlagKind, Segment, Serve
from core.validation import issues_from_validation_error

ISSUE_DOC = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["user-1", "user-2"]}],
    "rules": [
        {
            "id": "north-america",
            "when": {
                "all": [
                    {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                    {"not": {"attribute": "email", "op": "ends_with", "values": ["@test.com"]}},
                ]
            },
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        }
    ],
    "default": {"variation": "off"},
}


def first_issue(model: type[Any], data: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return issues_from_validation_error(caught.value)[0]


def test_environment_config__issue_example__round_trips_json_unchanged() -> None:
    config = EnvironmentConfig.model_validate(ISSUE_DOC)
    dumped = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert dumped == ISSUE_DOC
    assert EnvironmentConfig.model_validate_json(config.model_dump_json(by_alias=True)) == config


def test_condition__model_instances__are_accepted_as_conditions() -> None:
    config = EnvironmentConfig.model_validate(ISSUE_DOC)
    again = EnvironmentConfig(rules=config.rules)
    assert again.rules == config.rules
    nested = Segment(key="s", when=config.rules[0].when)
    assert nested.when == config.rules[0].when


def test_condition__not_a_condition__is_refused() -> None:
    issue = first_issue(Segment, {"key": "s", "when": "country == US"})
    assert issue["path"] == "when"


@pytest.mark.parametrize(
    ("clause", "reason"),
    [
        ({"attribute": "a", "op": "in", "values": []}, "needs at least one value"),
        ({"attribute": "a", "op": "exists", "values": [1]}, "takes exactly 0 value(s), got 1"),
        ({"attribute": "a", "op": "between", "values": [1]}, "takes exactly 2 value(s), got 1"),
        ({"attribute": "a", "op": "matches", "values": ["("]}, "invalid regular expression"),
        ({"attribute": "a", "op": "matches", "values": [1]}, "must be regular expressions"),
        ({"attribute": "a", "op": "gt", "values": ["1"]}, "numeric operators need numbers"),
        ({"attribute": "a", "op": "lt", "values": [True]}, "numeric operators need numbers"),
        ({"attribute": "a", "op": "before", "values": [1]}, "need ISO-8601 instants"),
        ({"attribute": "a", "op": "after", "values": ["yesterday"]}, "invalid ISO-8601 instant"),
        ({"attribute": "a", "op": "after", "values": ["2026-01-01T00:00:00"]}, "needs a UTC offset"),
        ({"attribute": "a", "op": "in_segment", "values": [1]}, "segment keys (strings)"),
        ({"attribute": "a", "op": "nope", "values": [1]}, "Input should be"),
    ],
)
def test_clause__bad_values__names_rule_path_and_reason(clause: dict[str, Any], reason: str) -> None:
    config = {"rules": [{"id": "r", "when": {"any": [clause]}, "serve": {"variation": "on"}}]}
    issue = first_issue(EnvironmentConfig, config)
    assert issue["path"].startswith("rules[0].when.any[0]")
    assert reason in issue["message"]


def test_clause__valid_dates_and_numbers__are_accepted() -> None:
    assert Clause(
        attribute="a", op="between_dates", values=("2026-01-01T00:00:00Z", "2026-02-01T00:00:00+01:00")
    )
    assert Clause(attribute="a", op="between", values=(1, 2.5))


@pytest.mark.parametrize(
    ("serve", "reason"),
    [
        ({}, "exactly one of 'variation' or 'rollout'"),
        ({"variation": "on", "rollout": [{"variation": "on", "weight": 1}]}, "exactly one of"),
        ({"rollout": []}, "at least one weighted variation"),
        ({"rollout": [{"variation": "on", "weight": 0}]}, "sum to more than 0"),
        ({"rollout": [{"variation": "on", "weight": 1}, {"variation": "on", "weight": 1}]}, "more than once"),
    ],
)
def test_serve__bad_rollout__is_refused_with_reason(serve: dict[str, Any], reason: str) -> None:
    issue = first_issue(Serve, serve)
    assert reason in issue["message"]


def test_schedule__disable_before_enable__is_refused_at_schedule_path() -> None:
    issue = first_issue(
        EnvironmentConfig,
        {"schedule": {"enable_at": "2026-02-01T00:00:00Z", "disable_at": "2026-01-01T00:00:00Z"}},
    )
    assert issue["path"] == "schedule" and "disable_at must be after enable_at" in issue["message"]


def test_flag__boolean_without_variations__gets_on_and_off() -> None:
    flag = Flag(key="f")
    assert [(v.key, v.value) for v in flag.variations] == [("on", True), ("off", False)]
    assert flag.variation("on") is not None and flag.variation("maybe") is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"key": "f", "kind": "string"}, "needs at least one variation"),
        ({"key": "f", "variations": [{"key": "a", "value": True}, {"key": "a", "value": False}]}, "unique"),
        ({"key": "f", "kind": "string", "variations": [{"key": "a", "value": 1}]}, "not of kind string"),
        ({"key": "f", "kind": "number", "variations": [{"key": "a", "value": True}]}, "not of kind number"),
        ({"key": "f", "variations": [{"key": "a", "value": "yes"}]}, "not of kind boolean"),
        ({"key": "Bad Key"}, "String should match pattern"),
    ],
)
def test_flag__bad_variations_or_key__is_refused_with_reason(data: dict[str, Any], reason: str) -> None:
    assert reason in first_issue(Flag, data)["message"]


@pytest.mark.parametrize(
    ("kind", "value"),
    [("string", "x"), ("number", 1.5), ("number", 2), ("json", {"a": [1]}), ("boolean", True)],
)
def test_flag__variation_of_its_kind__is_accepted(kind: str, value: Any) -> None:
    flag = Flag.model_validate({"key": "f", "kind": kind, "variations": [{"key": "a", "value": value}]})
    assert flag.kind is FlagKind(kind)


def test_model__valid_pattern_schedule_and_any_group__are_accepted() -> None:
    config = EnvironmentConfig.model_validate(
        {
            "schedule": {"enable_at": "2026-01-01T00:00:00Z", "disable_at": "2026-02-01T00:00:00Z"},
            "rules": [
                {
                    "id": "r",
                    "when": {
                        "any": [{"attribute": "email", "op": "matches", "values": [".*@example\\.com$"]}]
                    },
                    "serve": {"variation": "on"},
                }
            ],
        }
    )
    assert config.schedule is not None
    again = Segment(key="s", when=config.rules[0].when)
    assert again.when == config.rules[0].when


def test_flag__dumped_without_by_alias__still_uses_public_not_key() -> None:
    flag = Flag.model_validate(
        {
            "key": "f",
            "environments": {
                "production": {
                    "rules": [
                        {
                            "id": "r",
                            "when": {"not": {"attribute": "a", "op": "exists"}},
                            "serve": {"variation": "on"},
                        }
                    ]
                }
            },
        }
    )
    assert '"not":' in flag.model_dump_json() and "not_" not in flag.model_dump_json()
    assert "not" in flag.model_dump()["environments"]["production"]["rules"][0]["when"]
    assert Flag.model_validate_json(flag.model_dump_json()) == flag
