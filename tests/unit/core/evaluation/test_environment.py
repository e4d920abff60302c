"""CompiledEnvironment: the snapshot evaluators hold, updated one flag at a time."""

from __future__ import annotations

from typing import Any

from core.evaluation import ErrorCode, Reason, compile_environment
from core.model import Segment

from .builders import ENV, NOW, clause, make_flag


def env_of(*flags: tuple[Any, int], segments: dict[str, Segment] | None = None) -> Any:
    return compile_environment(flags, ENV, segments or {})


def test_compile_environment__later_pair_for_a_key__wins() -> None:
    environment = env_of((make_flag("a"), 1), (make_flag("a", {"default": {"variation": "on"}}), 2))
    assert len(environment) == 1
    assert "a" in environment
    assert environment.version_of("a") == 2
    assert environment.version_of("zzz") is None
    assert environment.evaluate("a", {}, NOW).variation == "on"


def test_evaluate__unknown_key__flag_not_found_naming_the_key() -> None:
    result = env_of().evaluate("nope", {}, NOW)
    assert (result.flag_key, result.error_code) == ("nope", ErrorCode.FLAG_NOT_FOUND)


def test_evaluate__prerequisites__resolved_within_the_environment() -> None:
    parent = make_flag("parent", {"default": {"variation": "on"}})
    child = make_flag(
        "child", {"prerequisites": [{"flag": "parent", "variation": "on"}], "default": {"variation": "on"}}
    )
    environment = env_of((parent, 1), (child, 1))
    assert environment.evaluate("child", {}, NOW).reason is Reason.DEFAULT
    assert environment.without("parent").evaluate("child", {}, NOW).reason is Reason.PREREQUISITE_FAILED


def test_evaluate_all__every_live_flag__archived_ones_left_out() -> None:
    environment = env_of(
        (make_flag("a", {"default": {"variation": "on"}}), 3),
        (make_flag("b"), 1),
        (make_flag("c", archived=True), 9),
    )
    results = environment.evaluate_all({"targetingKey": "x"}, NOW)
    assert set(results) == {"a", "b"}
    assert (results["a"].variation, results["a"].version) == ("on", 3)
    assert environment.get("c") is not None


def test_evaluate_all__context_not_an_object__invalid_context_for_each() -> None:
    results = env_of((make_flag("a"), 1)).evaluate_all("garbage", NOW)
    assert results["a"].error_code is ErrorCode.INVALID_CONTEXT


class ExplodingOnKey(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        if key == "boom":
            raise RuntimeError("boom")
        return super().get(key, default)


def test_evaluate_all__one_flag_raises__only_that_flag_is_an_error() -> None:
    bad = make_flag(
        "bad", {"rules": [{"id": "r", "when": clause("boom", "exists"), "serve": {"variation": "on"}}]}
    )
    environment = env_of((bad, 1), (make_flag("good", {"default": {"variation": "on"}}), 1))
    results = environment.evaluate_all(ExplodingOnKey(), NOW)
    assert results["bad"].error_code is ErrorCode.GENERAL
    assert results["good"].variation == "on"


def test_with_flag__new_version__replaces_only_that_flag() -> None:
    before = env_of((make_flag("a"), 1), (make_flag("b"), 1))
    after = before.with_flag(make_flag("a", {"default": {"variation": "on"}}), 2)
    assert after.evaluate("a", {}, NOW).variation == "on"
    assert before.evaluate("a", {}, NOW).variation == "off"
    assert after.get("b") is before.get("b")
    assert after.flags["a"].version == 2


def test_with_flag__new_key__added() -> None:
    after = env_of().with_flag(make_flag("new", {"default": {"variation": "on"}}), 1)
    assert after.evaluate_all({}, NOW)["new"].variation == "on"


def test_without__removes_key_or_returns_same_snapshot() -> None:
    environment = env_of((make_flag("a"), 1))
    assert environment.without("missing") is environment
    removed = environment.without("a")
    assert "a" not in removed
    assert removed.evaluate("a", {}, NOW).error_code is ErrorCode.FLAG_NOT_FOUND


def test_with_segments__segment_changed__flags_recompiled() -> None:
    flag = make_flag(
        "a",
        {
            "rules": [
                {
                    "id": "r",
                    "when": clause("targetingKey", "in_segment", "beta"),
                    "serve": {"variation": "on"},
                }
            ]
        },
    )
    environment = env_of((flag, 1), segments={"beta": Segment(key="beta", included=("alice",))})
    assert environment.evaluate("a", {"targetingKey": "alice"}, NOW).variation == "on"
    updated = environment.with_segments({"beta": Segment(key="beta", included=("bob",))})
    assert updated.evaluate("a", {"targetingKey": "alice"}, NOW).variation == "off"
    assert updated.evaluate("a", {"targetingKey": "bob"}, NOW).variation == "on"
    assert updated.version_of("a") == 1
