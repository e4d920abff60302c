"""Evaluation never raises: arbitrary JSON contexts against a flag using every operator."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.evaluation import EvaluationResult, Reason, compile_environment
from core.model import Flag, Segment

from .builders import ENV, NOW, clause

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ATTRIBUTES = ["targetingKey", "country", "email", "age", "v", "groups", "signup", "user", "account", "plan"]
interesting = st.one_of(
    json_values,
    st.sampled_from(
        ["US", "1.2.3", "v2", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "a@corp.com", "", "é"]
    ),
    st.dictionaries(st.sampled_from(["id", "address", "country"]), json_values, max_size=3),
)
contexts = st.dictionaries(st.sampled_from(ATTRIBUTES) | st.text(max_size=10), interesting, max_size=8)

OPS: list[dict[str, Any]] = [
    clause("country", "eq", "US", 1, True),
    clause("country", "neq", "US"),
    clause("country", "in", "US", "CA"),
    clause("country", "not_in", "US", ci=True),
    clause("email", "contains", "@corp", ci=True),
    clause("email", "not_contains", "@x"),
    clause("email", "starts_with", "a"),
    clause("email", "ends_with", ".com", ci=True),
    clause("email", "matches", r"^a.*@(corp|x)\.com$"),
    clause("age", "lt", 10),
    clause("age", "lte", 10.5),
    clause("age", "gt", 1),
    clause("age", "gte", -3),
    clause("age", "between", 1, 2),
    clause("signup", "before", "2026-01-01T00:00:00Z"),
    clause("signup", "after", "2026-01-01T00:00:00Z"),
    clause("signup", "between_dates", "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    clause("v", "semver_eq", "1.2.3"),
    clause("v", "semver_lt", "2"),
    clause("v", "semver_gt", "v1.0"),
    clause("groups", "contains_any", "a", 1, ci=True),
    clause("groups", "contains_all", "a", "b"),
    clause("user.address.country", "exists"),
    clause("plan", "not_exists"),
    clause("targetingKey", "in_segment", "seg"),
]
SEGMENTS = {
    "seg": Segment.model_validate({"key": "seg", "included": ["a"], "when": clause("country", "eq", "US")})
}


def build_flags() -> list[tuple[Flag, int]]:
    flags = []
    for index, when in enumerate(OPS):
        env = {
            "enabled": True,
            "off_variation": "off",
            "targets": [{"variation": "on", "values": ["vip"]}],
            "rules": [
                {"id": "r", "when": {"not": when}, "serve": {"variation": "off"}},
                {
                    "id": "s",
                    "when": when,
                    "serve": {
                        "rollout": [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}],
                        "bucket_by": "account.id",
                    },
                },
            ],
            "default": {"rollout": [{"variation": "on", "weight": 3}, {"variation": "off", "weight": 1}]},
        }
        flags.append((Flag.model_validate({"key": f"op-{index}", "environments": {ENV: env}}), 1))
    return flags


ENVIRONMENT = compile_environment(build_flags(), ENV, SEGMENTS)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(context=contexts)
def test_evaluate__arbitrary_json_context__typed_result_never_an_exception(context: dict[str, Any]) -> None:
    results = ENVIRONMENT.evaluate_all(context, NOW)
    assert len(results) == len(OPS)
    for key, result in results.items():
        assert isinstance(result, EvaluationResult)
        assert ENVIRONMENT.evaluate(key, context, NOW) is result
        assert result.reason is not Reason.ERROR or result.error_code == "TARGETING_KEY_MISSING"
