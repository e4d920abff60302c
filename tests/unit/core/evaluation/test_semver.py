from __future__ import annotations

import pytest

from core.evaluation import parse_semver

ORDERED = [
    "0.9.0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2",
    "v1.10.0",
    "2",
]


def test_parse_semver__semver_spec_examples__sort_in_precedence_order() -> None:
    keys = [parse_semver(v) for v in ORDERED]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("short", "full"),
    [("2", "2.0.0"), ("2.1", "2.1.0"), ("v2.1.3", "2.1.3"), ("V1", "1.0.0"), ("1.0.0+b1", "1.0.0")],
)
def test_parse_semver__partial_or_prefixed__equals_full_version(short: str, full: str) -> None:
    assert parse_semver(short) == parse_semver(full)


@pytest.mark.parametrize(
    "text", ["", "v", "1.2.3.4", "01.2.3", "1.2.x", "latest", "1.0.0-", "1" * 300, "1.0.0-a..b"]
)
def test_parse_semver__not_a_version__none(text: str) -> None:
    assert parse_semver(text) is None
