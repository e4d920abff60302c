"""The import plan: create, update (variations and/or the environment), unchanged; refusals with paths;
and the translation's remaining refusals, each with the JSON path of the construct."""

from __future__ import annotations

from typing import Any

import pytest

from core.commands import CreateFlag, SetEnvironmentConfig, UpdateFlagMetadata
from core.flagd import FlagdUnsupported, ImportAction, export_flagd, import_flagd, parse_flagd, plan_import
from core.model import Flag, FlagdBucketing

ENV = "production"
BOOL = {"on": True, "off": False}


def _flag(key: str = "f", **spec: Any) -> Flag:
    document = {"flags": {key: {"variants": BOOL, "defaultVariant": "off", **spec}}}
    return import_flagd(document, ENV)[0]


def test_plan__new_flag__created_with_expected_version_zero() -> None:
    [step] = plan_import([_flag()], {}, ENV, "why")

    assert step.action is ImportAction.CREATE
    assert isinstance(step.commands[0], CreateFlag) and step.commands[0].expected_version == 0


def test_plan__same_flag__unchanged_no_commands() -> None:
    flag = _flag()

    [step] = plan_import([flag], {"f": (flag, 4)}, ENV)

    assert (step.action, step.commands) == (ImportAction.UNCHANGED, ())


def test_plan__other_variations_and_config__two_commands_with_consecutive_versions() -> None:
    current = _flag()
    imported = import_flagd(
        {
            "flags": {
                "f": {
                    "variants": {"on": True, "off": False, "no": False},
                    "defaultVariant": "on",
                    "state": "DISABLED",
                }
            }
        },
        ENV,
    )[0]

    [step] = plan_import([imported], {"f": (current, 4)}, ENV)

    assert step.action is ImportAction.UPDATE
    update, config = step.commands
    assert isinstance(update, UpdateFlagMetadata) and update.expected_version == 4
    assert isinstance(config, SetEnvironmentConfig) and config.expected_version == 5


@pytest.mark.parametrize(
    ("current", "message"),
    [
        (
            import_flagd({"flags": {"f": {"variants": {"a": "x"}, "defaultVariant": "a"}}}, ENV)[0],
            "string flag",
        ),
        (_flag().model_copy(update={"archived": True}), "archived"),
    ],
)
def test_plan__other_kind_or_archived__refused(current: Flag, message: str) -> None:
    with pytest.raises(FlagdUnsupported, match=message) as refused:
        plan_import([_flag()], {"f": (current, 1)}, ENV)

    assert refused.value.path == "$.flags.f"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"flags": {"f": 5}}, "$.flags.f"),
        ({"flags": {"f": {"variants": BOOL, "defaultVariant": "off", "extra": 1}}}, "$.flags.f.extra"),
        ({"flags": {"f": {"variants": {}, "defaultVariant": "off"}}}, "$.flags.f.variants"),
        ({"flags": {"f": {"variants": BOOL, "defaultVariant": "maybe"}}}, "$.flags.f.defaultVariant"),
        ({"flags": {"f": {"variants": BOOL, "defaultVariant": "off", "state": "ON"}}}, "$.flags.f.state"),
        ({"flags": {"Bad Key": {"variants": BOOL, "defaultVariant": "off"}}}, "$.flags['Bad Key']"),
        ({"flags": {}, "metadata": {"a": [1]}}, "$.metadata['a']"),
        ({"flags": {}, "metadata": ["a"]}, "$.metadata"),
        (
            {"flags": {"f": {"variants": BOOL, "defaultVariant": "off", "metadata": {"a": None}}}},
            "$.flags.f.metadata['a']",
        ),
        ({"flags": {}, "$evaluators": []}, "$['$evaluators']"),
    ],
)
def test_import__bad_flag_definitions__refused_with_path(document: dict[str, Any], path: str) -> None:
    with pytest.raises(FlagdUnsupported) as refused:
        import_flagd(document, ENV)

    assert refused.value.path == path


T = "$.flags.f.targeting"


@pytest.mark.parametrize(
    ("targeting", "path"),
    [
        ({"if": "x"}, f"{T}.if"),
        ({"if": ["x", "on"]}, f"{T}.if[0]"),
        ({"if": [{"and": []}, "on"]}, f"{T}.if[0].and"),
        ({"if": [{"==": [{"var": "a"}]}, "on"]}, f"{T}.if[0]['==']"),
        ({"if": [{"==": [1, {"var": "a"}]}, "on"]}, f"{T}.if[0]['=='][0]"),
        ({"if": [{"==": [{"var": "a"}, {"var": "b"}]}, "on"]}, f"{T}.if[0]['=='][1]"),
        ({"if": [{"==": [{"var": ""}, 1]}, "on"]}, f"{T}.if[0]['=='][0].var"),
        ({"if": [{"<": [{"var": "a"}, 1, 2]}, "on"]}, f"{T}.if[0]['<']"),
        ({"if": [{"<": [{"var": "a"}, "b"]}, "on"]}, f"{T}.if[0]['<'][1]"),
        ({"if": [{">": [{"var": "$flagd.timestamp"}, 1.5]}, "on"]}, f"{T}.if[0]['>'][1]"),
        ({"if": [{"in": [{"var": "a"}]}, "on"]}, f"{T}.if[0].in"),
        ({"if": [{"in": [{"var": "a"}, []]}, "on"]}, f"{T}.if[0].in[1]"),
        ({"if": [{"in": [1, 2]}, "on"]}, f"{T}.if[0].in"),
        ({"if": [{"sem_ver": [{"var": "v"}, "="]}, "on"]}, f"{T}.if[0].sem_ver"),
        ({"if": [{"==": [{"var": "a"}, 1]}, None]}, f"{T}.if[1]"),
        ({"if": [{"==": [{"var": "a"}, 1]}, 5]}, f"{T}.if[1]"),
        ({"fractional": []}, f"{T}.fractional"),
        ({"fractional": [["on", 0]]}, f"{T}.fractional"),
        ({"fractional": [["nope", 1]]}, f"{T}.fractional[0]"),
        ({"fractional": [{"cat": ["s", {"var": "$flagd.flagKey"}]}, ["on", 1]]}, f"{T}.fractional[0].cat[1]"),
        ({"fractional": [{"cat": [1, {"var": "x"}]}, ["on", 1]]}, f"{T}.fractional[0]"),
    ],
)
def test_import__inexact_targeting__refused_with_path(targeting: Any, path: str) -> None:
    with pytest.raises(FlagdUnsupported) as refused:
        _flag(targeting=targeting)

    assert refused.value.path == path


def test_import__fractional_buckets__salt_and_attribute_kept() -> None:
    salted = _flag(targeting={"fractional": [{"cat": ["s", {"var": "org"}]}, ["on", 1], ["off", 1]]})
    plain = _flag(targeting={"fractional": [{"var": "org"}, ["on", 1], ["off", 1]]})

    serve = salted.environments[ENV].default
    assert serve is not None and (serve.bucket_by, serve.salt) == ("org", "s")
    plain_serve = plain.environments[ENV].default
    assert plain_serve is not None and plain_serve.salt == ""
    assert export_flagd([plain], ENV)["flags"]["f"]["targeting"]["fractional"][0] == {"var": "org"}


def test_import__variants_that_are_not_a_valid_flag__refused() -> None:
    with pytest.raises(FlagdUnsupported, match="not a valid Flagstream flag"):
        import_flagd({"flags": {"f": {"variants": {"bad key!": 1}, "defaultVariant": "bad key!"}}}, ENV)


def test_export__disabled_archived_and_other_environments() -> None:
    disabled = _flag(state="DISABLED")
    archived = _flag("g").model_copy(update={"archived": True})
    elsewhere = import_flagd({"flags": {"h": {"variants": BOOL, "defaultVariant": "on"}}}, "staging")[0]

    exported = export_flagd([disabled, archived, elsewhere], ENV)

    assert exported["flags"] == {"f": {"state": "DISABLED", "variants": BOOL, "defaultVariant": "off"}}
    assert parse_flagd('{"flags": {}}') == {"flags": {}}


def test_export__unconditional_rule_and_salted_rollout__round_trip() -> None:
    flag = Flag.model_validate(
        {
            "key": "f",
            "environments": {
                ENV: {
                    "enabled": True,
                    "off_variation": "off",
                    "rules": [
                        {
                            "id": "all",
                            "serve": {
                                "rollout": [
                                    {"variation": "on", "weight": 1},
                                    {"variation": "off", "weight": 1},
                                ],
                                "salt": "s",
                            },
                        }
                    ],
                    "default": {"variation": "off"},
                }
            },
        }
    )

    exported = export_flagd([flag], ENV)
    [again] = import_flagd(exported, ENV)

    assert exported["flags"]["f"]["targeting"]["if"][0] is True
    assert again.environments[ENV].rules[0].when is None
    serve, before = again.environments[ENV].rules[0].serve, flag.environments[ENV].rules[0].serve
    assert (serve.rollout, serve.salt) == (before.rollout, before.salt)
    # Back from flagd, the rollout reads its bucketing value as flagd's cat does.
    assert (serve.bucket_by, serve.flagd_bucketing) == ("targetingKey", FlagdBucketing.CAT)


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"enabled": False}, "$.flags.f.off_variation"),
        ({"enabled": True}, "$.flags.f.default"),
    ],
)
def test_export__no_variant_to_serve__refused(config: dict[str, Any], path: str) -> None:
    flag = Flag.model_validate({"key": "f", "environments": {ENV: config}})

    with pytest.raises(FlagdUnsupported) as refused:
        export_flagd([flag], ENV)

    assert refused.value.path == path
