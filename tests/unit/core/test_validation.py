"""Cross-reference validation: every issue reported, each with its field path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidConfiguration
from core.model import EnvironmentConfig, Flag, Segment
from core.state import Catalog
from core.validation import (
    ensure_valid,
    issues_from_validation_error,
    path_from_loc,
    validate_environment,
    validate_flag,
    validate_segment,
)

FLAG = Flag(key="checkout")


def issues_of(
    config: dict[str, Any], catalog: Catalog | None = None, flag: Flag = FLAG
) -> list[dict[str, str]]:
    return validate_environment(
        flag, "production", EnvironmentConfig.model_validate(config), catalog or Catalog()
    )


def paths_of(config: dict[str, Any], catalog: Catalog | None = None) -> list[str]:
    return [issue["path"] for issue in issues_of(config, catalog)]


def test_validate__valid_config__reports_nothing() -> None:
    config = {
        "enabled": True,
        "off_variation": "off",
        "targets": [{"variation": "on", "values": ["u1"]}],
        "rules": [
            {
                "id": "r",
                "when": {"attribute": "a", "op": "in_segment", "values": ["beta"]},
                "serve": {"variation": "on"},
            }
        ],
        "default": {"rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}]},
    }
    assert issues_of(config, Catalog(segment_keys=frozenset({"beta"}))) == []


def test_validate__unknown_variations_everywhere__reports_every_path() -> None:
    config = {
        "off_variation": "x1",
        "targets": [{"variation": "x2", "values": ["u1"]}],
        "rules": [
            {"id": "r", "serve": {"variation": "x3"}},
            {
                "id": "s",
                "serve": {"rollout": [{"variation": "on", "weight": 1}, {"variation": "x4", "weight": 1}]},
            },
        ],
        "default": {"rollout": [{"variation": "x5", "weight": 1}]},
    }
    assert paths_of(config) == [
        "off_variation",
        "targets[0].variation",
        "rules[0].serve.variation",
        "rules[1].serve.rollout[1].variation",
        "default.rollout[0].variation",
    ]


def test_validate__enabled_without_default__reports_default() -> None:
    assert issues_of({"enabled": True}) == [
        {"path": "default", "message": "a default serve is required when the environment is enabled"}
    ]


def test_validate__disabled_without_default__is_valid() -> None:
    assert issues_of({"enabled": False}) == []


def test_validate__duplicate_target_keys_and_variations__reports_each_repeat() -> None:
    config = {
        "targets": [
            {"variation": "on", "values": ["u1", "u2", "u1"]},
            {"variation": "off", "values": ["u2"]},
            {"variation": "on", "values": ["u3"]},
        ]
    }
    issues = issues_of(config)
    assert [i["path"] for i in issues] == [
        "targets[0].values[2]",
        "targets[1].values[0]",
        "targets[2].variation",
    ]
    assert issues[1]["message"] == "context key 'u2' is already targeted at targets[0].values[1]"


def test_validate__unknown_segment_in_nested_condition__reports_clause_value_path() -> None:
    when = {
        "all": [
            {"attribute": "a", "op": "eq", "values": [1]},
            {"any": [{"not": {"attribute": "b", "op": "in_segment", "values": ["known", "gone"]}}]},
        ]
    }
    config = {"rules": [{"id": "r", "when": when, "serve": {"variation": "on"}}]}
    assert paths_of(config, Catalog(segment_keys=frozenset({"known"}))) == [
        "rules[0].when.all[1].any[0].not.values[1]"
    ]


def test_validate__prerequisite_problems__reports_flag_and_variation_paths() -> None:
    catalog = Catalog(flag_variations={"login": frozenset({"on", "off"})})
    config = {
        "prerequisites": [
            {"flag": "checkout", "variation": "on"},
            {"flag": "nope", "variation": "on"},
            {"flag": "login", "variation": "maybe"},
            {"flag": "login", "variation": "on"},
        ]
    }
    issues = issues_of(config, catalog)
    assert [(i["path"], i["message"]) for i in issues] == [
        ("prerequisites[0].flag", "a flag cannot be its own prerequisite"),
        ("prerequisites[1].flag", "unknown flag 'nope'"),
        ("prerequisites[2].variation", "unknown variation 'maybe' of flag 'login'"),
        ("prerequisites[3].flag", "flag 'login' is listed more than once"),
    ]


def test_validate__prerequisite_cycle_through_other_flags__reports_the_cycle() -> None:
    catalog = Catalog(
        flag_variations={"a": frozenset({"on"}), "b": frozenset({"on"}), "c": frozenset({"on"})},
        prerequisites={
            "production": {
                "a": frozenset({"b"}),
                "b": frozenset({"c", "checkout"}),
                "c": frozenset(),
                "checkout": frozenset(),
            }
        },
    )
    issues = issues_of({"prerequisites": [{"flag": "a", "variation": "on"}]}, catalog)
    assert issues == [
        {"path": "prerequisites[0].flag", "message": "prerequisite cycle: checkout -> a -> b -> checkout"}
    ]


def test_validate__prerequisites_of_other_environment__are_not_a_cycle() -> None:
    catalog = Catalog(
        flag_variations={"a": frozenset({"on"})}, prerequisites={"staging": {"a": frozenset({"checkout"})}}
    )
    assert issues_of({"prerequisites": [{"flag": "a", "variation": "on"}]}, catalog) == []


def test_validate__diamond_prerequisites__is_not_a_cycle() -> None:
    catalog = Catalog(
        flag_variations={k: frozenset({"on"}) for k in "abcde"},
        prerequisites={
            "production": {
                "a": frozenset({"c", "d"}),
                "b": frozenset({"c"}),
                "c": frozenset({"e"}),
                "d": frozenset({"e"}),
            }
        },
    )
    config = {"prerequisites": [{"flag": "a", "variation": "on"}, {"flag": "b", "variation": "on"}]}
    assert issues_of(config, catalog) == []


def test_validate_flag__two_environments__prefixes_paths_with_environment() -> None:
    flag = Flag.model_validate(
        {
            "key": "checkout",
            "environments": {"staging": {"off_variation": "x"}, "production": {"enabled": True}},
        }
    )
    assert [i["path"] for i in validate_flag(flag, Catalog())] == [
        "environments.production.default",
        "environments.staging.off_variation",
    ]


def test_validate_segment__unknown_nested_segment__reports_path() -> None:
    segment = Segment.model_validate(
        {
            "key": "beta",
            "when": {"any": [{"attribute": "a", "op": "in_segment", "values": ["alpha", "nope"]}]},
        }
    )
    assert validate_segment(segment, Catalog(segment_keys=frozenset({"alpha"}))) == [
        {"path": "when.any[0].values[1]", "message": "unknown segment 'nope'"}
    ]


def test_validate_segment__disjoint_included_and_excluded__is_valid() -> None:
    assert validate_segment(Segment(key="beta", included=("u1",), excluded=("u2",)), Catalog()) == []


def test_ensure_valid__issues__raises_invalid_configuration_with_all_details() -> None:
    issues = [{"path": "a", "message": "bad"}, {"path": "b", "message": "worse"}]
    with pytest.raises(InvalidConfiguration) as caught:
        ensure_valid(issues, "nope")
    assert caught.value.details == issues
    assert caught.value.message == "nope: a: bad"
    ensure_valid([])


def test_path_from_loc__condition_union_tags__are_dropped() -> None:
    assert path_from_loc(("rules", 0, "when", "all", "all", 1, "clause", "op")) == "rules[0].when.all[1].op"
    assert path_from_loc(("when", "not", "not", "any", "any", 0), "segment") == "segment.when.not.any[0]"


def test_issues_from_validation_error__bad_regex_in_nested_rule__names_field_path() -> None:
    bad = {
        "rules": [
            {
                "id": "r",
                "serve": {"variation": "on"},
                "when": {"all": [{"attribute": "email", "op": "matches", "values": ["("]}]},
            }
        ]
    }
    with pytest.raises(ValidationError) as caught:
        EnvironmentConfig.model_validate(bad)
    issue = issues_from_validation_error(caught.value)[0]
    assert issue["path"] == "rules[0].when.all[0]"
    assert "invalid regular expression" in issue["message"]


def test_catalog_build__flags_and_segments__leaves_archived_out_and_indexes_references() -> None:
    live = Flag.model_validate(
        {
            "key": "a",
            "environments": {
                "production": {
                    "prerequisites": [{"flag": "b", "variation": "on"}],
                    "rules": [
                        {
                            "id": "r",
                            "when": {"not": {"attribute": "x", "op": "in_segment", "values": ["beta"]}},
                            "serve": {"variation": "on"},
                        },
                        {"id": "s", "serve": {"variation": "on"}},
                        {
                            "id": "t",
                            "when": {"attribute": "x", "op": "eq", "values": [1]},
                            "serve": {"variation": "on"},
                        },
                    ],
                }
            },
        }
    )
    archived = Flag(key="z", archived=True)
    catalog = Catalog.build([live, archived], [Segment(key="beta"), Segment(key="old", archived=True)])
    assert catalog.segment_keys == {"beta"}
    assert catalog.flag_variations == {"a": {"on", "off"}}
    assert catalog.prerequisites == {"production": {"a": {"b"}}}
    assert catalog.segment_users == {"beta": {"a"}}


def test_validate_segment__reference_back_through_other_segments__reports_segment_cycle() -> None:
    catalog = Catalog(
        segment_keys=frozenset({"alpha", "gamma"}),
        segment_dependencies={"alpha": frozenset({"gamma"}), "gamma": frozenset({"beta"})},
    )
    segment = Segment.model_validate(
        {"key": "beta", "when": {"attribute": "a", "op": "in_segment", "values": ["alpha"]}}
    )
    assert validate_segment(segment, catalog) == [
        {"path": "when.values[0]", "message": "segment cycle: beta -> alpha -> gamma -> beta"}
    ]


def test_validate_segment__reference_to_independent_segment__is_valid() -> None:
    catalog = Catalog(segment_keys=frozenset({"alpha"}), segment_dependencies={"alpha": frozenset()})
    segment = Segment.model_validate(
        {"key": "beta", "when": {"attribute": "a", "op": "in_segment", "values": ["alpha"]}}
    )
    assert validate_segment(segment, catalog) == []


def test_catalog_build__segments__index_their_segment_dependencies() -> None:
    nested = Segment.model_validate(
        {"key": "b", "when": {"attribute": "x", "op": "in_segment", "values": ["a"]}}
    )
    catalog = Catalog.build([], [Segment(key="a"), nested])
    assert catalog.segment_dependencies == {"a": frozenset(), "b": frozenset({"a"})}
