"""Evaluation order: archived/absent, off, schedule/expiry, prerequisites, targets, rules, default."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.evaluation import CompiledFlag, ErrorCode, EvaluationResult, Reason, compile_flag, evaluate
from core.model import Flag

from .builders import ENV, NOW, clause, compile_env, make_flag

FULL: dict[str, Any] = {
    "targets": [{"variation": "on", "values": ["vip"]}, {"variation": "off", "values": ["banned", "vip"]}],
    "rules": [
        {"id": "us", "when": clause("country", "eq", "US"), "serve": {"variation": "on"}},
        {"id": "any", "when": clause("country", "exists"), "serve": {"variation": "off"}},
    ],
    "default": {"variation": "on"},
}


def test_evaluate__unknown_flag__flag_not_found() -> None:
    result = evaluate(None, {"targetingKey": "a"}, NOW)
    assert (result.reason, result.error_code, result.value) == (Reason.ERROR, ErrorCode.FLAG_NOT_FOUND, None)


def test_evaluate__archived_flag__flag_not_found_with_key_and_version() -> None:
    result = evaluate(compile_env(FULL, archived=True, version=4), {"targetingKey": "vip"}, NOW)
    assert (result.flag_key, result.error_code, result.version) == ("flag-1", ErrorCode.FLAG_NOT_FOUND, 4)


def test_evaluate__disabled__off_variation_whatever_the_context() -> None:
    result = evaluate(compile_env({**FULL, "enabled": False}), {"targetingKey": "vip", "country": "US"}, NOW)
    assert (result.reason, result.variation, result.value) == (Reason.DISABLED, "off", False)


def test_evaluate__disabled_without_off_variation__no_value() -> None:
    result = evaluate(compile_env({"enabled": False, "off_variation": None}), {}, NOW)
    assert (result.reason, result.variation, result.value, result.error_code) == (
        Reason.DISABLED,
        None,
        None,
        None,
    )


def test_evaluate__environment_missing__disabled_without_value() -> None:
    compiled = compile_flag(make_flag(), "staging", version=2, segments={})
    result = evaluate(compiled, {}, NOW)
    assert (result.reason, result.value, result.version) == (Reason.DISABLED, None, 2)


def test_evaluate__individual_target__wins_over_rules_first_listing_wins() -> None:
    compiled = compile_env(FULL)
    vip = evaluate(compiled, {"targetingKey": "vip", "country": "FR"}, NOW)
    assert (vip.reason, vip.variation, vip.rule_id) == (Reason.TARGETING_MATCH, "on", None)
    banned = evaluate(compiled, {"targetingKey": "banned", "country": "US"}, NOW)
    assert (banned.reason, banned.variation) == (Reason.TARGETING_MATCH, "off")


def test_evaluate__rules__first_matching_rule_wins_with_its_id() -> None:
    compiled = compile_env(FULL)
    us = evaluate(compiled, {"targetingKey": "a", "country": "US"}, NOW)
    assert (us.reason, us.variation, us.rule_id) == (Reason.TARGETING_MATCH, "on", "us")
    fr = evaluate(compiled, {"targetingKey": "a", "country": "FR"}, NOW)
    assert (fr.variation, fr.rule_id) == ("off", "any")


def test_evaluate__no_rule_matches__default() -> None:
    result = evaluate(compile_env(FULL), {"targetingKey": 7}, NOW)
    assert (result.reason, result.variation, result.rule_id, result.version) == (
        Reason.DEFAULT,
        "on",
        None,
        1,
    )


def test_evaluate__no_default__no_value_with_reason_default() -> None:
    result = evaluate(compile_env({"default": None}), {}, NOW)
    assert (result.reason, result.variation, result.value, result.error_code) == (
        Reason.DEFAULT,
        None,
        None,
        None,
    )


def test_evaluate__rule_without_condition__always_matches() -> None:
    compiled = compile_env({"rules": [{"id": "all", "serve": {"variation": "on"}}]})
    assert evaluate(compiled, {}, NOW).rule_id == "all"


def test_evaluate__rollout_rule__split_with_rule_id() -> None:
    serve = {"rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 0}]}
    compiled = compile_env({"rules": [{"id": "r", "when": clause("country", "eq", "US"), "serve": serve}]})
    result = evaluate(compiled, {"targetingKey": "a", "country": "US"}, NOW)
    assert (result.reason, result.variation, result.rule_id) == (Reason.SPLIT, "on", "r")
    missing = evaluate(compiled, {"country": "US"}, NOW)
    assert (missing.error_code, missing.rule_id) == (ErrorCode.TARGETING_KEY_MISSING, "r")


def test_evaluate__same_outcome__shares_one_result_object() -> None:
    compiled = compile_env(FULL)
    first = evaluate(compiled, {"targetingKey": "x", "country": "US"}, NOW)
    assert evaluate(compiled, {"targetingKey": "y", "country": "US"}, NOW) is first


def test_evaluate__string_flag__serves_variation_value() -> None:
    compiled = compile_env(
        {"default": {"variation": "blue"}, "off_variation": "red"},
        kind="string",
        variations=[{"key": "red", "value": "#f00"}, {"key": "blue", "value": "#00f"}],
    )
    assert evaluate(compiled, {}, NOW).value == "#00f"


def test_evaluate__serve_names_unknown_variation__parse_error() -> None:
    flag = Flag.model_validate(
        {"key": "f", "environments": {ENV: {"enabled": True, "default": {"variation": "nope"}}}}
    )
    result = evaluate(compile_flag(flag, ENV, version=1, segments={}), {}, NOW)
    assert (result.reason, result.error_code) == (Reason.ERROR, ErrorCode.PARSE_ERROR)


@pytest.mark.parametrize("context", [None, "user", 42, ["targetingKey"], ("a", "b")])
def test_evaluate__context_not_an_object__invalid_context(context: Any) -> None:
    result = evaluate(compile_env(FULL), context, NOW)
    assert (result.reason, result.error_code, result.flag_key) == (
        Reason.ERROR,
        ErrorCode.INVALID_CONTEXT,
        "flag-1",
    )


def test_evaluate__mapping_that_is_not_a_dict__accepted() -> None:
    from types import MappingProxyType

    result = evaluate(compile_env(FULL), MappingProxyType({"targetingKey": "vip"}), NOW)
    assert result.reason is Reason.TARGETING_MATCH


class ExplodingMapping(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("boom")


def test_evaluate__context_raises_on_read__general_error_not_exception() -> None:
    result = evaluate(compile_env(FULL), ExplodingMapping(), NOW)
    assert (result.reason, result.error_code) == (Reason.ERROR, ErrorCode.GENERAL)


# --- schedule and expiry -------------------------------------------------------------------------------


def scheduled(**timing: Any) -> CompiledFlag:
    env: dict[str, Any] = {"default": {"variation": "on"}}
    schedule = {k: v.isoformat() for k, v in timing.items() if k in ("enable_at", "disable_at")}
    if schedule:
        env["schedule"] = schedule
    if "expires_at" in timing:
        env["expires_at"] = timing["expires_at"].isoformat()
    return compile_env(env)


@pytest.mark.parametrize(
    ("timing", "expected"),
    [
        ({"enable_at": NOW + timedelta(seconds=1)}, Reason.DISABLED),
        ({"enable_at": NOW}, Reason.DEFAULT),
        ({"disable_at": NOW}, Reason.DISABLED),
        ({"disable_at": NOW + timedelta(seconds=1)}, Reason.DEFAULT),
        ({"enable_at": NOW - timedelta(days=1), "disable_at": NOW + timedelta(days=1)}, Reason.DEFAULT),
        ({"expires_at": NOW}, Reason.DISABLED),
        ({"expires_at": NOW + timedelta(microseconds=1)}, Reason.DEFAULT),
        ({"disable_at": NOW + timedelta(days=2), "expires_at": NOW - timedelta(days=1)}, Reason.DISABLED),
    ],
)
def test_evaluate__schedule_and_expiry__window_is_enable_at_inclusive_stop_exclusive(
    timing: dict[str, Any], expected: Reason
) -> None:
    result = evaluate(scheduled(**timing), {"targetingKey": "a"}, NOW)
    assert result.reason is expected
    assert result.variation == ("off" if expected is Reason.DISABLED else "on")


def test_evaluate__naive_now_with_schedule__general_error_not_exception() -> None:
    result = evaluate(scheduled(enable_at=NOW), {}, NOW.replace(tzinfo=None))
    assert result.error_code is ErrorCode.GENERAL


# --- prerequisites -------------------------------------------------------------------------------------


def prereq_flags(*specs: tuple[str, dict[str, Any]]) -> dict[str, CompiledFlag]:
    return {key: compile_env(env, key=key) for key, env in specs}


def test_prerequisite__served__flag_evaluates_normally() -> None:
    flags = prereq_flags(
        ("parent", {"default": {"variation": "on"}}),
        ("child", {"prerequisites": [{"flag": "parent", "variation": "on"}], "default": {"variation": "on"}}),
    )
    result = evaluate(flags["child"], {}, NOW, flags=flags)
    assert (result.reason, result.variation) == (Reason.DEFAULT, "on")


@pytest.mark.parametrize(
    "parent",
    [
        {"default": {"variation": "off"}},  # serves another variation
        {"enabled": False, "off_variation": "on"},  # off, even though its off variation is the one required
        {"default": {"rollout": [{"variation": "on", "weight": 1}]}},  # errors: no targeting key
    ],
)
def test_prerequisite__not_served__prerequisite_failed_with_off_variation(parent: dict[str, Any]) -> None:
    flags = prereq_flags(
        ("parent", parent),
        ("child", {"prerequisites": [{"flag": "parent", "variation": "on"}], "default": {"variation": "on"}}),
    )
    result = evaluate(flags["child"], {}, NOW, flags=flags)
    assert (result.reason, result.variation, result.value) == (Reason.PREREQUISITE_FAILED, "off", False)


def test_prerequisite__missing_flag_or_no_flags_mapping__prerequisite_failed() -> None:
    child = compile_env({"prerequisites": [{"flag": "ghost", "variation": "on"}]}, key="child")
    assert evaluate(child, {}, NOW, flags={"child": child}).reason is Reason.PREREQUISITE_FAILED
    assert evaluate(child, {}, NOW).reason is Reason.PREREQUISITE_FAILED


def test_prerequisite__cycle__prerequisite_failed_not_recursion_error() -> None:
    flags = prereq_flags(
        ("a", {"prerequisites": [{"flag": "b", "variation": "on"}], "default": {"variation": "on"}}),
        ("b", {"prerequisites": [{"flag": "a", "variation": "on"}], "default": {"variation": "on"}}),
        ("self", {"prerequisites": [{"flag": "self", "variation": "on"}], "default": {"variation": "on"}}),
    )
    for key in flags:
        assert evaluate(flags[key], {}, NOW, flags=flags).reason is Reason.PREREQUISITE_FAILED


def test_prerequisite__chain_deeper_than_limit__fails_shallower_succeeds() -> None:
    from core.evaluation import MAX_PREREQUISITE_DEPTH

    def chain(length: int) -> dict[str, CompiledFlag]:
        specs: list[tuple[str, dict[str, Any]]] = [(f"f{length}", {"default": {"variation": "on"}})]
        for i in range(length):
            env = {
                "prerequisites": [{"flag": f"f{i + 1}", "variation": "on"}],
                "default": {"variation": "on"},
            }
            specs.append((f"f{i}", env))
        return prereq_flags(*specs)

    ok = chain(MAX_PREREQUISITE_DEPTH)
    assert evaluate(ok["f0"], {}, NOW, flags=ok).reason is Reason.DEFAULT
    deep = chain(MAX_PREREQUISITE_DEPTH + 1)
    assert evaluate(deep["f0"], {}, NOW, flags=deep).reason is Reason.PREREQUISITE_FAILED


def test_prerequisite__checked_before_targets() -> None:
    flags = prereq_flags(
        ("parent", {"default": {"variation": "off"}}),
        (
            "child",
            {
                "prerequisites": [{"flag": "parent", "variation": "on"}],
                "targets": [{"variation": "on", "values": ["vip"]}],
            },
        ),
    )
    assert (
        evaluate(flags["child"], {"targetingKey": "vip"}, NOW, flags=flags).reason
        is Reason.PREREQUISITE_FAILED
    )


def test_evaluation_result__is_error__true_only_with_error_code() -> None:
    assert EvaluationResult("f", None, None, Reason.ERROR, error_code=ErrorCode.GENERAL).is_error
    assert not EvaluationResult("f", True, "on", Reason.DEFAULT).is_error


def test_compiled_flag__repr__names_key_environment_version() -> None:
    assert repr(compile_env(version=3)) == "CompiledFlag(key='flag-1', environment='production', version=3)"


def test_evaluate__two_targets_same_variation__share_one_result() -> None:
    compiled = compile_env(
        {"targets": [{"variation": "on", "values": ["a"]}, {"variation": "on", "values": ["b"]}]}
    )
    assert evaluate(compiled, {"targetingKey": "a"}, NOW) is evaluate(compiled, {"targetingKey": "b"}, NOW)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (42, Reason.TARGETING_MATCH),
        ("42", Reason.TARGETING_MATCH),
        (42.0, Reason.DEFAULT),
        (True, Reason.DEFAULT),
        ([42], Reason.DEFAULT),
    ],
)
def test_evaluate__targets__match_string_or_integer_keys_only(key: Any, expected: Reason) -> None:
    compiled = compile_env({"targets": [{"variation": "on", "values": ["42"]}]})
    assert evaluate(compiled, {"targetingKey": key}, NOW).reason is expected
