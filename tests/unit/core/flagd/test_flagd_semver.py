"""sem_ver as flagd evaluates it: flagd prefixes ``v`` and asks golang.org/x/mod/semver ``IsValid``, which
accepts the shorthands ``v1`` and ``v1.2`` but refuses a pre-release or build on a shorthand
(``1-alpha``, ``1.2+build``) and numeric pre-release identifiers with leading zeros (``1.0.0-01``)."""

from __future__ import annotations

import pytest

from core.evaluation import parse_semver
from core.flagd import import_flagd

ENV = "production"


@pytest.mark.parametrize("text", ["1-alpha", "1+build", "1.2-rc.1", "1.2+b7", "1.0.0-01", "1.0.0-rc.007"])
def test_parse_semver__versions_flagd_refuses__not_versions(text: str) -> None:
    assert parse_semver(text) is None


@pytest.mark.parametrize(
    "text", ["1", "1.2", "v1.2.3", "1.0.0-rc.1", "1.0.0-0", "1.0.0-x.7.z.92+b.01", "1.0.0-alpha-01"]
)
def test_parse_semver__versions_flagd_accepts__still_versions(text: str) -> None:
    assert parse_semver(text) is not None


@pytest.mark.parametrize(
    ("version", "expected"), [("1-alpha", False), ("1.0.0-01", False), ("1.0.0-1", True)]
)
def test_sem_ver_rule__refused_versions_do_not_match(version: str, expected: bool) -> None:
    targeting = {"if": [{"sem_ver": [{"var": "v"}, "<", "2.0.0"]}, "on", "off"]}
    document = {
        "flags": {
            "f": {"variants": {"on": True, "off": False}, "defaultVariant": "off", "targeting": targeting}
        }
    }
    from datetime import UTC, datetime

    from core.evaluation import compile_environment

    snapshot = compile_environment(((f, 1) for f in import_flagd(document, ENV)), ENV, {})

    assert snapshot.evaluate("f", {"v": version}, datetime(2026, 1, 1, tzinfo=UTC)).value is expected


@pytest.mark.parametrize(
    ("op", "target", "value", "expected"),
    [
        ("semver_gt", "1.2.3", 2, True),  # "2" is 2.0.0
        ("semver_eq", "1.2.0", 1.2, True),  # "1.2" is 1.2.0
        ("semver_lt", "2.0.0", 1, True),
        ("semver_eq", "1.0.0", 1.0, True),  # a float with no fraction is written "1", as flagd writes it
        ("semver_eq", "1.0.0", True, False),  # a boolean is not a number
        ("semver_gt", "0.0.1", -1, False),  # "-1" is not a version
    ],
)
def test_sem_ver__number_in_context__compares_its_decimal_text(
    op: str, target: str, value: object, expected: bool
) -> None:
    from datetime import UTC, datetime

    from core.evaluation import compile_environment
    from core.model import Flag

    flag = Flag.model_validate(
        {
            "key": "f",
            "environments": {
                ENV: {
                    "enabled": True,
                    "off_variation": "off",
                    "rules": [
                        {
                            "id": "r",
                            "when": {"attribute": "v", "op": op, "values": [target]},
                            "serve": {"variation": "on"},
                        }
                    ],
                    "default": {"variation": "off"},
                }
            },
        }
    )
    snapshot = compile_environment([(flag, 1)], ENV, {})

    assert snapshot.evaluate("f", {"v": value}, datetime(2026, 1, 1, tzinfo=UTC)).value is expected
