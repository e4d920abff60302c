"""Export -> import gives the same evaluation: flags of ours through flagd JSON and back, and flagd
documents through our model and back, compared over many contexts (seeded)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from core.evaluation import compile_environment
from core.flagd import FlagdUnsupported, export_flagd, import_flagd
from core.model import Flag
from tests.unit.core.flagd.test_flagd_import import TESTBED

ENV = "production"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

OURS = Flag.model_validate(
    {
        "key": "checkout",
        "kind": "string",
        "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "c", "value": "C"}],
        "environments": {
            ENV: {
                "enabled": True,
                "off_variation": "c",
                "targets": [{"variation": "a", "values": ["vip-1", "vip-2"]}],
                "rules": [
                    {
                        "id": "eu",
                        "when": {
                            "all": [
                                {"attribute": "country", "op": "in", "values": ["FR", "DE"]},
                                {"not": {"attribute": "email", "op": "ends_with", "values": ["@test.com"]}},
                            ]
                        },
                        "serve": {"variation": "b"},
                    },
                    {
                        "id": "new-app",
                        "when": {
                            "any": [
                                {"attribute": "app", "op": "semver_gt", "values": ["2.0.0"]},
                                {"attribute": "age", "op": "gte", "values": [30]},
                                {"attribute": "plan", "op": "eq", "values": ["pro", "team"]},
                                {
                                    "attribute": "$now",
                                    "op": "before",
                                    "values": ["2026-06-01T00:00:00+00:00"],
                                },
                            ]
                        },
                        "serve": {
                            "rollout": [{"variation": "a", "weight": 30}, {"variation": "b", "weight": 70}]
                        },
                    },
                ],
                "default": {
                    "rollout": [{"variation": "b", "weight": 1}, {"variation": "c", "weight": 3}],
                    "bucket_by": "org",
                },
            }
        },
    }
)


def _contexts(n: int = 2000) -> list[dict[str, Any]]:
    rng = random.Random(11)
    contexts = []
    for i in range(n):
        context: dict[str, Any] = {
            "targetingKey": rng.choice([f"u{i}", "vip-1", "vip-2"]),
            "org": f"o{rng.randrange(50)}",
        }
        for name, values in {
            "country": ["FR", "DE", "US"],
            "email": ["a@test.com", "b@corp.com"],
            "app": ["1.9.0", "2.0.0", "2.1.0", "10.0.0"],
            "age": [18, 30, 45],
            "plan": ["pro", "free", "team"],
        }.items():
            if rng.random() < 0.8:
                context[name] = rng.choice(values)
        contexts.append(context)
    return contexts


def _answers(flags: list[Flag], now: datetime = NOW) -> list[dict[str, Any]]:
    snapshot = compile_environment(((f, 1) for f in flags), ENV, {})
    return [
        {k: (r.value, r.variation) for k, r in snapshot.evaluate_all(c, now).items()} for c in _contexts()
    ]


@pytest.mark.parametrize("now", [NOW, datetime(2026, 7, 1, tzinfo=UTC)])
def test_ours__export_then_import__same_evaluation(now: datetime) -> None:
    exported = json.loads(json.dumps(export_flagd([OURS], ENV)))  # through real JSON

    again = import_flagd(exported, ENV)

    assert _answers(again, now) == _answers([OURS], now)
    assert len({str(a) for a in _answers([OURS], now)}) >= 2  # the contexts really exercise the flag


def test_flagd__import_export_import__same_evaluation_and_stable_document() -> None:
    first = import_flagd(TESTBED, ENV)
    exported = export_flagd(first, ENV)
    second = import_flagd(exported, ENV)

    assert _answers(second) == _answers(first)
    assert export_flagd(second, ENV) == exported


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"prerequisites": [{"flag": "other", "variation": "on"}]}, "$.flags.checkout.prerequisites"),
        (
            {
                "rules": [
                    {
                        "id": "r",
                        "when": {"attribute": "x", "op": "matches", "values": ["^a"]},
                        "serve": {"variation": "a"},
                    }
                ]
            },
            "$.flags.checkout.rules[0].when.op",
        ),
        (
            {
                "rules": [
                    {
                        "id": "r",
                        "when": {"attribute": "x", "op": "eq", "values": ["a"], "case_insensitive": True},
                        "serve": {"variation": "a"},
                    }
                ]
            },
            "$.flags.checkout.rules[0].when.case_insensitive",
        ),
    ],
)
def test_export__inexpressible__refused_with_path(change: dict[str, Any], path: str) -> None:
    config = OURS.environments[ENV].model_copy(update={})
    flag = OURS.model_validate(
        {
            **OURS.model_dump(by_alias=True),
            "environments": {ENV: {**config.model_dump(by_alias=True, exclude_none=True), **change}},
        }
    )

    with pytest.raises(FlagdUnsupported) as refused:
        export_flagd([flag], ENV)

    assert refused.value.path == path
