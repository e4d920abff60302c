"""Bucketing is flagd's ``fractional`` v2: MurmurHash3 x86_32, seed 0, (h * total) >> 32."""

from __future__ import annotations

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.evaluation import Reason, bucket_of, evaluate, hash_of
from core.evaluation.bucketing import pick_index, thresholds_of

from .builders import NOW, compile_env

# (bucketing string, total weight, unsigned hash, bucket) — computed once with mmh3 and frozen.
GOLDEN = [
    ("hello", 100, 613153351, 14),  # 0x248bfa47, the published MurmurHash3 x86_32 vector
    ("", 100, 0, 0),
    ("checkout-v2user-1", 100, 3757832068, 87),
    ("checkout-v2user-2", 100, 2596557696, 60),
    ("new-welcome-bannerjohn@example.com", 100, 1458417656, 33),
    ("headerColoruser@faas.com", 4, 2756860352, 2),
    ("ünïcode-flag😀", 1_000_000, 3418705940, 795979),
    ("abc", 3, 3017643002, 2),
    ("saltuser-42", 7, 2951163399, 4),
]


def walk_weights(bucket: int, weights: list[int]) -> int:
    """flagd's distributeValue: the first slot whose cumulative weight exceeds the bucket."""
    end = 0
    for index, weight in enumerate(weights):
        end += weight
        if bucket < end:
            return index
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("text", "total", "expected_hash", "expected_bucket"), GOLDEN)
def test_bucket_of__golden_vector__matches_mmh3_and_frozen_value(
    text: str, total: int, expected_hash: int, expected_bucket: int
) -> None:
    assert mmh3.hash(text, 0, False) == expected_hash
    assert hash_of(text) == expected_hash
    assert (mmh3.hash(text, 0, False) * total) >> 32 == expected_bucket
    assert bucket_of(text, total) == expected_bucket


def test_thresholds_of__zero_total__is_refused() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        thresholds_of([0, 0])


@settings(derandomize=True, max_examples=300)
@given(
    weights=st.lists(st.integers(0, 1_000_000), min_size=1, max_size=6).filter(lambda w: sum(w) > 0),
    point=st.integers(0, 2**32 - 1),
)
def test_thresholds__any_hash__pick_the_same_slot_as_walking_the_weights(
    weights: list[int], point: int
) -> None:
    from bisect import bisect_right

    bucket = (point * sum(weights)) >> 32
    assert bisect_right(thresholds_of(weights), point) == walk_weights(bucket, weights)


@settings(derandomize=True, max_examples=200)
@given(text=st.text(max_size=40), weights=st.lists(st.integers(1, 100), min_size=1, max_size=5))
def test_pick_index__same_input__same_slot_as_flagd(text: str, weights: list[int]) -> None:
    bounds = thresholds_of(weights)
    first = pick_index(text, bounds)
    assert pick_index(text, bounds) == first
    assert first == walk_weights(bucket_of(text, sum(weights)), weights)


def rollout_flag(on: int, off: int, **serve: object) -> object:
    return compile_env(
        {
            "default": {
                "rollout": [{"variation": "on", "weight": on}, {"variation": "off", "weight": off}],
                **serve,
            }
        },
        key="rollout-flag",
    )


@settings(derandomize=True, max_examples=200)
@given(key=st.text(min_size=1, max_size=30))
def test_rollout__same_context__same_variation(key: str) -> None:
    flag = rollout_flag(50, 50)
    first = evaluate(flag, {"targetingKey": key}, NOW)  # type: ignore[arg-type]
    assert first.reason is Reason.SPLIT
    assert evaluate(flag, {"targetingKey": key}, NOW) is first  # type: ignore[arg-type]


@settings(derandomize=True, max_examples=60)
@given(low=st.integers(0, 100), raise_by=st.integers(0, 100))
def test_rollout__percentage_raised__keeps_previous_users(low: int, raise_by: int) -> None:
    high = min(100, low + raise_by)
    before = rollout_flag(low, 100 - low) if low < 100 else rollout_flag(100, 0)
    after = rollout_flag(high, 100 - high) if high < 100 else rollout_flag(100, 0)
    for i in range(300):
        context = {"targetingKey": f"user-{i}"}
        if evaluate(before, context, NOW).variation == "on":  # type: ignore[arg-type]
            assert evaluate(after, context, NOW).variation == "on"  # type: ignore[arg-type]


@pytest.mark.parametrize("weights", [(50, 50), (10, 90), (1, 99), (20, 30, 50), (1, 1, 1, 1)])
def test_rollout__100000_keys__shares_within_one_point(weights: tuple[int, ...]) -> None:
    names = ["a", "b", "c", "d"][: len(weights)]
    flag = compile_env(
        {
            "default": {
                "rollout": [{"variation": n, "weight": w} for n, w in zip(names, weights, strict=True)]
            }
        },
        key="share-flag",
        kind="string",
        variations=[{"key": n, "value": n} for n in names] + [{"key": "off", "value": "off"}],
    )
    counts = dict.fromkeys(names, 0)
    total = 100_000
    for i in range(total):
        variation = evaluate(flag, {"targetingKey": f"subject-{i}"}, NOW).variation
        assert variation is not None
        counts[variation] += 1
    for name, weight in zip(names, weights, strict=True):
        assert abs(counts[name] / total - weight / sum(weights)) <= 0.01


def test_rollout__default_key__hashes_flag_key_plus_targeting_key() -> None:
    flag = rollout_flag(50, 50)
    for i in range(200):
        key = f"user-{i}"
        expected = "on" if bucket_of("rollout-flag" + key, 100) < 50 else "off"
        assert evaluate(flag, {"targetingKey": key}, NOW).variation == expected  # type: ignore[arg-type]


def test_rollout__salt_and_bucket_by__hash_salt_plus_attribute() -> None:
    flag = rollout_flag(30, 70, salt="exp-7", bucket_by="account.id")
    for i in range(200):
        account = f"acct-{i}"
        expected = "on" if bucket_of("exp-7" + account, 100) < 30 else "off"
        result = evaluate(flag, {"account": {"id": account}}, NOW)  # type: ignore[arg-type]
        assert result.variation == expected


def test_rollout__empty_salt__hashes_the_bare_attribute_like_flagd_explicit_bucket_by() -> None:
    flag = rollout_flag(50, 50, salt="", bucket_by="email")
    email = "john@example.com"
    expected = "on" if bucket_of(email, 100) < 50 else "off"
    assert evaluate(flag, {"email": email}, NOW).variation == expected  # type: ignore[arg-type]


def test_rollout__integer_bucketing_value__hashed_as_decimal_text() -> None:
    flag = rollout_flag(50, 50, bucket_by="account")
    assert evaluate(flag, {"account": 1234}, NOW) is evaluate(flag, {"account": "1234"}, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"targetingKey": ""},
        {"targetingKey": None},
        {"targetingKey": True},
        {"targetingKey": ["a"]},
        {"targetingKey": 1.5},
    ],
)
def test_rollout__no_usable_targeting_key__error_targeting_key_missing(context: dict[str, object]) -> None:
    result = evaluate(rollout_flag(50, 50), context, NOW)  # type: ignore[arg-type]
    assert result.reason is Reason.ERROR
    assert result.error_code == "TARGETING_KEY_MISSING"
    assert result.value is None


def test_rollout__three_slots__serves_each_by_flagd_walk() -> None:
    flag = compile_env(
        {
            "default": {
                "rollout": [
                    {"variation": "a", "weight": 1},
                    {"variation": "b", "weight": 0},
                    {"variation": "c", "weight": 2},
                ]
            }
        },
        key="three",
        kind="string",
        variations=[{"key": k, "value": k} for k in ("a", "b", "c", "off")],
    )
    seen = set()
    for i in range(300):
        key = f"u{i}"
        expected = "ac"[0 if bucket_of("three" + key, 3) < 1 else 1]
        result = evaluate(flag, {"targetingKey": key}, NOW)
        assert result.variation == expected
        seen.add(result.variation)
    assert seen == {"a", "c"}


def test_rollout__three_slots_missing_key__error() -> None:
    flag = compile_env(
        {
            "default": {
                "rollout": [
                    {"variation": "on", "weight": 1},
                    {"variation": "off", "weight": 1},
                    {"variation": "x", "weight": 1},
                ]
            }
        },
        variations=[
            {"key": "on", "value": True},
            {"key": "off", "value": False},
            {"key": "x", "value": False},
        ],
    )
    assert evaluate(flag, {}, NOW).error_code == "TARGETING_KEY_MISSING"


class Key(str):
    """A str subclass, as an SDK's typed context might hold."""


def test_rollout__str_subclass_key__hashed_like_the_plain_string() -> None:
    for slots in (2, 3):
        flag = compile_env(
            {"default": {"rollout": [{"variation": k, "weight": 1} for k in ("on", "off", "x")[:slots]]}},
            variations=[
                {"key": "on", "value": True},
                {"key": "off", "value": False},
                {"key": "x", "value": True},
            ],
        )
        for i in range(50):
            assert evaluate(flag, {"targetingKey": Key(f"u{i}")}, NOW) is evaluate(
                flag, {"targetingKey": f"u{i}"}, NOW
            )
