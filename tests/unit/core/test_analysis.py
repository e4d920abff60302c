"""core.analysis (rule warnings, complexity), core.attributes, core.templates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.analysis import analyze_environment, complexity_of, condition_complexity
from core.attributes import attributes_from_rules, context_attribute_types, merge_context_types, type_of_value
from core.model import EnvironmentConfig, Flag, Segment
from core.templates import TEMPLATES, render_template

US = {"attribute": "country", "op": "in", "values": ["US"]}
US_CA = {"attribute": "country", "op": "in", "values": ["US", "CA"]}
PRO = {"attribute": "plan", "op": "eq", "values": ["pro"]}


def _config(*whens: Any, default: Any = None) -> EnvironmentConfig:
    rules = [
        {"id": f"r{i}", "serve": {"variation": "on"}} | ({"when": w} if w is not None else {})
        for i, w in enumerate(whens)
    ]
    return EnvironmentConfig.model_validate(
        {"enabled": True, "rules": rules, "default": default or {"variation": "off"}}
    )


def _codes(config: EnvironmentConfig) -> list[tuple[str, str]]:
    return [(w.path, w.code) for w in analyze_environment(config).warnings]


def test_analysis__independent_rules__no_warning() -> None:
    assert _codes(_config(US, PRO)) == []


def test_analysis__rule_after_catch_all__unreachable() -> None:
    assert _codes(_config(US, None, PRO)) == [("rules[2]", "rule_unreachable")]


def test_analysis__narrower_rule_after_wider__shadowed() -> None:
    assert _codes(_config(US_CA, {"all": [US, PRO]})) == [("rules[1]", "rule_shadowed")]


def test_analysis__wider_rule_after_narrower__not_shadowed() -> None:
    assert _codes(_config(US, US_CA)) == []


def test_analysis__same_condition_twice__second_shadowed() -> None:
    assert _codes(_config(PRO, PRO)) == [("rules[1]", "rule_shadowed")]


def test_analysis__exists_implied_by_eq__shadowed() -> None:
    exists = {"attribute": "plan", "op": "exists"}
    assert _codes(_config(exists, PRO)) == [("rules[1]", "rule_shadowed")]
    assert _codes(_config(exists, {"attribute": "plan", "op": "neq", "values": ["x"]})) == []


def test_analysis__or_condition__not_analysed_for_shadowing() -> None:
    assert _codes(_config({"any": [US, PRO]}, US)) == []
    assert _codes(_config(US, {"any": [US, PRO]})) == []


def test_analysis__disjoint_in_lists__unreachable() -> None:
    germany = {"attribute": "country", "op": "eq", "values": ["DE"]}
    assert _codes(_config({"all": [US, germany]})) == [("rules[0].when", "rule_unreachable")]


def test_analysis__exists_and_not_exists__unreachable() -> None:
    gone = {"attribute": "plan", "op": "not_exists"}
    assert _codes(_config({"all": [PRO, gone]})) == [("rules[0].when", "rule_unreachable")]


def test_analysis__overlapping_in_lists__reachable() -> None:
    assert _codes(_config({"all": [US_CA, US]})) == []


def test_analysis__case_insensitive_or_object_values__not_judged() -> None:
    loose = {"attribute": "country", "op": "eq", "values": ["de"], "case_insensitive": True}
    obj = {"attribute": "country", "op": "in", "values": [{"a": 1}]}
    assert _codes(_config({"all": [US, loose]})) == []
    assert _codes(_config({"all": [US, obj]})) == []
    assert _codes(_config(obj, obj)) == [("rules[1]", "rule_shadowed")]
    assert _codes(_config({"all": [US, obj]}, US_CA)) == []


def test_analysis__different_attribute__not_implied() -> None:
    assert _codes(_config(US, {"attribute": "region", "op": "in", "values": ["US"]})) == []


def test_analysis__rollout_all_on_one_variation__warned() -> None:
    rollout = {"rollout": [{"variation": "on", "weight": 100}, {"variation": "off", "weight": 0}]}
    config = EnvironmentConfig.model_validate(
        {"enabled": True, "rules": [{"id": "a", "when": US, "serve": rollout}], "default": rollout}
    )
    assert _codes(config) == [
        ("rules[0].serve.rollout", "rollout_single_variation"),
        ("default.rollout", "rollout_single_variation"),
    ]


def test_analysis__split_rollout__not_warned() -> None:
    split = {"rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}]}
    assert _codes(_config(default=split)) == []


def test_complexity__counts_nodes_regex_segments_and_long_lists() -> None:
    regex = {"attribute": "email", "op": "matches", "values": ["^a"]}
    many = {"attribute": "id", "op": "in", "values": [str(i) for i in range(21)]}
    assert condition_complexity(None) == 0
    assert (
        condition_complexity(
            EnvironmentConfig.model_validate(
                {"rules": [{"id": "a", "when": US, "serve": {"variation": "on"}}]}
            )
            .rules[0]
            .when
        )
        == 1
    )
    config = _config(
        {"all": [regex, {"not": many}]},
        default={"rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}]},
    )
    # all(1) + regex(1+2) + not(1) + many(1+2) + default rollout(1)
    assert complexity_of(config) == 9
    assert analyze_environment(config).complexity == 9


def test_complexity__targets_prerequisites_and_rule_rollouts_count() -> None:
    config = EnvironmentConfig.model_validate(
        {
            "targets": [{"variation": "on", "values": ["u1"]}],
            "prerequisites": [{"flag": "other", "variation": "on"}],
            "rules": [{"id": "a", "serve": {"rollout": [{"variation": "on", "weight": 1}]}}],
        }
    )
    assert complexity_of(config) == 3


def test_analysis__warning_to_dict__has_path_code_message() -> None:
    warning = analyze_environment(_config(PRO, PRO)).warnings[0].to_dict()
    assert warning["path"] == "rules[1]" and warning["code"] == "rule_shadowed" and "r0" in warning["message"]


# --- attributes ---------------------------------------------------------------------------------


def test_attributes__from_rules__types_from_operators_and_values() -> None:
    flag = Flag.model_validate(
        {
            "key": "f",
            "environments": {
                "prod": _config(
                    US,
                    {"attribute": "age", "op": "gt", "values": [18]},
                    {"attribute": "beta", "op": "eq", "values": [True]},
                    {"attribute": "plan", "op": "exists"},
                    {"attribute": "x", "op": "in_segment", "values": ["s"]},
                ).model_dump()
            },
        }
    )
    segment = Segment.model_validate(
        {"key": "s", "when": {"attribute": "version", "op": "semver_gt", "values": ["1.2.0"]}}
    )
    found = {k: v.to_dict() for k, v in attributes_from_rules([flag], [segment]).items()}
    assert set(found) == {"country", "age", "beta", "plan", "version"}
    assert found["country"]["types"] == ["string"] and found["country"]["examples"] == ["US"]
    assert found["age"]["types"] == ["number"]
    assert found["beta"]["types"] == ["boolean"]
    assert found["plan"]["types"] == [] and found["plan"]["operators"] == ["exists"]
    assert found["version"]["types"] == ["semver"] and found["version"]["used_by"] == ["segment:s"]


def test_attributes__examples__capped_and_unique() -> None:
    many = {"attribute": "id", "op": "in", "values": ["a", "a", "b", "c", "d", "e", "f", {"o": 1}]}
    flag = Flag.model_validate({"key": "f", "environments": {"p": _config(many).model_dump()}})
    assert attributes_from_rules([flag], [])["id"].examples == ["a", "b", "c", "d", "e"]


def test_context_types__names_and_types_only_never_values() -> None:
    context = {
        "targetingKey": "u-1",
        "email": "alice@example.com",
        "age": 31,
        "pro": False,
        "tags": ["x"],
        "address": {"country": "FR", "geo": {"lat": 1.5}},
        "nothing": None,
    }
    types = context_attribute_types(context)
    assert types == {
        "targetingKey": "string",
        "email": "string",
        "age": "number",
        "pro": "boolean",
        "tags": "array",
        "address.country": "string",
        "address.geo.lat": "number",
        "nothing": "null",
    }
    assert "alice@example.com" not in repr(types)


def test_context_types__deep_nesting_stops_as_object() -> None:
    deep: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
    assert context_attribute_types(deep) == {"a.b.c.d.e": "object"}


def test_merge_context_types__adds_names_without_examples() -> None:
    merged = merge_context_types({}, {"plan": ["string"]})
    assert merged["plan"].to_dict()["sources"] == ["contexts"] and merged["plan"].examples == []


@pytest.mark.parametrize(
    ("value", "name"), [(None, "null"), (1.5, "number"), ({}, "object"), ((1,), "array")]
)
def test_type_of_value(value: Any, name: str) -> None:
    assert type_of_value(value) == name


# --- templates ----------------------------------------------------------------------------------


def test_templates__the_six_named_in_the_issue__each_renders_a_valid_config() -> None:
    assert [t.id for t in TEMPLATES] == [
        "percentage-rollout",
        "internal-users-first",
        "country-list",
        "beta-segment",
        "kill-switch",
        "scheduled-launch",
    ]
    for template in TEMPLATES:
        rendered = template.to_dict()
        EnvironmentConfig.model_validate(rendered["config"])
        assert all(p["default"] is not None for p in rendered["parameters"])


def test_templates__percentage__weights_follow_the_parameter() -> None:
    config = render_template("percentage-rollout", {"percent": 25})
    weights = {w["variation"]: w["weight"] for w in config["default"]["rollout"]}
    assert weights == {"on": 25_000, "off": 75_000}


def test_templates__bad_parameter__refused() -> None:
    with pytest.raises(ValidationError):
        render_template("scheduled-launch", {"enable_at": "not a date"})
    with pytest.raises(KeyError):
        render_template("nope", {})
