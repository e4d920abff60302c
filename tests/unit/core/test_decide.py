"""decide(): one test per command outcome and per error code."""

from __future__ import annotations

from typing import Any

import pytest

from core.commands import (
    ArchiveFlag,
    CreateFlag,
    DisableFlag,
    EnableFlag,
    FlagCommand,
    RecordRollbackSkipped,
    RestoreFlag,
    RollBackEnvironment,
    SetEnvironmentConfig,
    SetRollout,
    SetRules,
    SetTargets,
    UpdateFlagMetadata,
)
from core.decide import decide
from core.errors import (
    EnvironmentNotFound,
    FlagArchived,
    FlagExists,
    FlagNotFound,
    InvalidCommand,
    InvalidConfiguration,
    VersionConflict,
)
from core.events import AlertInfo, EventType, read_payload
from core.model import EnvironmentConfig, Flag
from core.state import Catalog, FlagState
from tests.unit.core._streams import FlagStream

PROD = "production"
BASE_CONFIG: dict[str, Any] = {
    "enabled": False,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["user-1"]}],
    "rules": [
        {
            "id": "na",
            "when": {"attribute": "country", "op": "in", "values": ["US"]},
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        }
    ],
    "default": {"variation": "off"},
}


def make_stream(config: dict[str, Any] | None = BASE_CONFIG, catalog: Catalog | None = None) -> FlagStream:
    stream = FlagStream("checkout", catalog=catalog or Catalog())
    stream.run(CreateFlag(flag_key="checkout", flag=Flag(key="checkout")))
    if config is not None:
        stream.run(SetEnvironmentConfig(flag_key="checkout", environment=PROD, config=config))
    return stream


def only_event(stream: FlagStream, command: FlagCommand) -> Any:
    events = stream.run(command)
    assert len(events) == 1
    return events[0]


# --- create ---------------------------------------------------------------------------------


def test_create__new_key__emits_flag_created_with_whole_flag() -> None:
    stream = FlagStream("checkout")
    event = only_event(
        stream,
        CreateFlag(flag_key="checkout", flag=Flag(key="checkout", name="Checkout"), expected_version=0),
    )
    assert event.type == EventType.FLAG_CREATED
    assert read_payload(event).flag.name == "Checkout"  # type: ignore[attr-defined]
    assert stream.state.version == 1


def test_create__existing_flag__raises_flag_exists() -> None:
    stream = make_stream(None)
    with pytest.raises(FlagExists) as caught:
        stream.run(CreateFlag(flag_key="checkout", flag=Flag(key="checkout")))
    assert (caught.value.code, caught.value.http_status) == ("flag_exists", 409)


def test_create__expected_version_not_zero__raises_version_conflict() -> None:
    with pytest.raises(VersionConflict) as caught:
        FlagStream("checkout").run(
            CreateFlag(flag_key="checkout", flag=Flag(key="checkout"), expected_version=3)
        )
    assert caught.value.current_version == 0
    assert caught.value.to_dict()["current_version"] == 0


def test_create__key_differs_from_flag_key__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand) as caught:
        FlagStream("checkout").run(CreateFlag(flag_key="checkout", flag=Flag(key="other")))
    assert caught.value.details[0]["path"] == "flag.key"


def test_create__archived_flag__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        FlagStream("checkout").run(CreateFlag(flag_key="checkout", flag=Flag(key="checkout", archived=True)))


def test_create__unknown_variation_in_environment__reports_path_under_environments() -> None:
    flag = Flag.model_validate(
        {"key": "checkout", "environments": {PROD: {"default": {"variation": "maybe"}}}}
    )
    with pytest.raises(InvalidConfiguration) as caught:
        FlagStream("checkout").run(CreateFlag(flag_key=flag.key, flag=flag))
    assert caught.value.details[0]["path"] == "environments.production.default.variation"
    assert caught.value.http_status == 422


def test_decide__command_for_another_flag__raises_invalid_command() -> None:
    with pytest.raises(InvalidCommand):
        decide(FlagState(key="a"), ArchiveFlag(flag_key="b"), Catalog())


# --- existence, version, archived ----------------------------------------------------------------


def test_command__absent_flag__raises_flag_not_found() -> None:
    with pytest.raises(FlagNotFound) as caught:
        FlagStream("checkout").run(EnableFlag(flag_key="checkout", environment=PROD))
    assert (caught.value.code, caught.value.http_status) == ("flag_not_found", 404)


def test_command__stale_expected_version__raises_version_conflict_with_current_version() -> None:
    stream = make_stream()
    with pytest.raises(VersionConflict) as caught:
        stream.run(EnableFlag(flag_key="checkout", environment=PROD, expected_version=1))
    assert caught.value.current_version == 2
    assert caught.value.details == [{"path": "expected_version", "message": "current version is 2"}]


def test_command__matching_expected_version__is_accepted() -> None:
    stream = make_stream()
    assert stream.run(EnableFlag(flag_key="checkout", environment=PROD, expected_version=2))


def test_command__archived_flag__raises_flag_archived() -> None:
    stream = make_stream()
    stream.run(ArchiveFlag(flag_key="checkout"))
    with pytest.raises(FlagArchived) as caught:
        stream.run(EnableFlag(flag_key="checkout", environment=PROD))
    assert (caught.value.code, caught.value.http_status) == ("flag_archived", 409)
    with pytest.raises(FlagArchived):
        stream.run(ArchiveFlag(flag_key="checkout"))


def test_restore__archived_flag__emits_flag_restored_and_unarchives() -> None:
    stream = make_stream()
    stream.run(ArchiveFlag(flag_key="checkout"))
    assert stream.state.flag is not None and stream.state.flag.archived
    event = only_event(stream, RestoreFlag(flag_key="checkout"))
    assert event.type == EventType.FLAG_RESTORED
    assert not stream.state.flag.archived


def test_restore__live_flag__is_a_no_op() -> None:
    stream = make_stream()
    assert stream.run(RestoreFlag(flag_key="checkout")) == []
    assert stream.state.version == 2


# --- environment commands ------------------------------------------------------------------------


def test_set_environment_config__new_environment__diff_lists_every_top_level_field_whole() -> None:
    stream = make_stream(None)
    event = only_event(
        stream, SetEnvironmentConfig(flag_key="checkout", environment=PROD, config=BASE_CONFIG)
    )
    payload = read_payload(event)
    assert event.type == EventType.ENVIRONMENT_CONFIGURED and event.environment == PROD
    changes = {c.path: (c.before, c.after) for c in payload.diff}  # type: ignore[attr-defined]
    # null-valued fields (schedule, expires_at) are absent on both sides: not a change
    assert list(changes) == [
        "auto_rollback",
        "default",
        "enabled",
        "off_variation",
        "prerequisites",
        "rules",
        "targets",
    ]
    assert changes["enabled"] == (None, False)
    assert changes["off_variation"] == (None, "off")
    assert stream.state.env_versions == {PROD: 2}


def test_set_environment_config__same_config__is_a_no_op() -> None:
    stream = make_stream()
    assert stream.run(SetEnvironmentConfig(flag_key="checkout", environment=PROD, config=BASE_CONFIG)) == []


def test_enable__disabled_environment__emits_flag_enabled_with_full_config_and_diff() -> None:
    stream = make_stream()
    event = only_event(stream, EnableFlag(flag_key="checkout", environment=PROD))
    payload = read_payload(event)
    assert event.type == EventType.FLAG_ENABLED
    assert payload.config.enabled  # type: ignore[attr-defined]
    assert [c.model_dump() for c in payload.diff] == [  # type: ignore[attr-defined]
        {"path": "enabled", "before": False, "after": True}
    ]


def test_enable__already_enabled__is_a_no_op() -> None:
    stream = make_stream({**BASE_CONFIG, "enabled": True})
    assert stream.run(EnableFlag(flag_key="checkout", environment=PROD)) == []


def test_enable__environment_without_default__raises_invalid_configuration() -> None:
    stream = make_stream({"enabled": False})
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(EnableFlag(flag_key="checkout", environment=PROD))
    assert caught.value.details[0]["path"] == "default"


def test_enable__unknown_environment__raises_environment_not_found() -> None:
    stream = make_stream()
    with pytest.raises(EnvironmentNotFound) as caught:
        stream.run(EnableFlag(flag_key="checkout", environment="staging"))
    assert (caught.value.code, caught.value.http_status) == ("environment_not_found", 404)


def test_disable__enabled_environment_with_stale_segment__still_disables() -> None:
    config = {
        **BASE_CONFIG,
        "enabled": True,
        "rules": [
            {
                "id": "beta",
                "when": {"attribute": "x", "op": "in_segment", "values": ["beta"]},
                "serve": {"variation": "on"},
            }
        ],
    }
    stream = make_stream(config, catalog=Catalog(segment_keys=frozenset({"beta"})))
    stream.catalog = Catalog()  # the segment has since been archived
    event = only_event(stream, DisableFlag(flag_key="checkout", environment=PROD))
    assert event.type == EventType.FLAG_DISABLED
    assert stream.state.flag is not None and not stream.state.flag.environments[PROD].enabled


def test_set_rollout__rule__changes_only_that_rule_serve() -> None:
    stream = make_stream()
    command = SetRollout(
        flag_key="checkout",
        environment=PROD,
        rule_id="na",
        rollout=[{"variation": "on", "weight": 80}, {"variation": "off", "weight": 20}],
    )
    event = only_event(stream, command)
    payload = read_payload(event)
    assert event.type == EventType.ROLLOUT_CHANGED and payload.rule_id == "na"  # type: ignore[attr-defined]
    assert [c.model_dump() for c in payload.diff] == [  # type: ignore[attr-defined]
        {"path": "rules[0].serve.rollout[0].weight", "before": 50, "after": 80},
        {"path": "rules[0].serve.rollout[1].weight", "before": 50, "after": 20},
    ]


def test_set_rollout__no_rule_id__sets_default_serve_keeping_bucket_by_and_salt() -> None:
    config = {
        **BASE_CONFIG,
        "default": {"rollout": [{"variation": "off", "weight": 1}], "bucket_by": "org", "salt": "s1"},
    }
    stream = make_stream(config)
    stream.run(
        SetRollout(
            flag_key="checkout",
            environment=PROD,
            rollout=[{"variation": "on", "weight": 1}, {"variation": "off", "weight": 9}],
        )
    )
    assert stream.state.flag is not None
    default = stream.state.flag.environments[PROD].default
    assert default is not None and (default.bucket_by, default.salt) == ("org", "s1")
    assert [w.weight for w in default.rollout or ()] == [1, 9]


def test_set_rollout__explicit_bucket_by_and_salt__replace_previous_ones() -> None:
    stream = make_stream({**BASE_CONFIG, "default": None})
    stream.run(
        SetRollout(
            flag_key="checkout",
            environment=PROD,
            rollout=[{"variation": "on", "weight": 1}],
            bucket_by="company",
            salt="x",
        )
    )
    assert stream.state.flag is not None
    default = stream.state.flag.environments[PROD].default
    assert default is not None and (default.bucket_by, default.salt) == ("company", "x")


def test_set_rollout__unknown_rule__raises_invalid_command() -> None:
    stream = make_stream()
    with pytest.raises(InvalidCommand) as caught:
        stream.run(
            SetRollout(
                flag_key="checkout",
                environment=PROD,
                rule_id="nope",
                rollout=[{"variation": "on", "weight": 1}],
            )
        )
    assert caught.value.details[0]["path"] == "rule_id"
    assert (caught.value.code, caught.value.http_status) == ("invalid_command", 422)


def test_set_rollout__weights_sum_to_zero__raises_invalid_configuration_at_serve_path() -> None:
    stream = make_stream()
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(
            SetRollout(
                flag_key="checkout",
                environment=PROD,
                rule_id="na",
                rollout=[{"variation": "on", "weight": 0}],
            )
        )
    assert caught.value.details[0]["path"] == "rules[0].serve"


def test_set_rollout__unknown_variation__reports_rollout_path() -> None:
    stream = make_stream()
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(
            SetRollout(
                flag_key="checkout",
                environment=PROD,
                rule_id="na",
                rollout=[{"variation": "on", "weight": 1}, {"variation": "maybe", "weight": 1}],
            )
        )
    assert caught.value.details == [
        {
            "path": "rules[0].serve.rollout[1].variation",
            "message": "unknown variation 'maybe' (flag 'checkout' has: off, on)",
        }
    ]


def test_set_rules__new_rules__emits_rules_changed() -> None:
    stream = make_stream()
    rules = [
        {
            "id": "eu",
            "when": {"attribute": "country", "op": "eq", "values": ["FR"]},
            "serve": {"variation": "on"},
        }
    ]
    event = only_event(stream, SetRules(flag_key="checkout", environment=PROD, rules=rules))
    assert event.type == EventType.RULES_CHANGED
    assert stream.state.flag is not None and stream.state.flag.environments[PROD].rules[0].id == "eu"


def test_set_rules__duplicate_rule_ids__raises_invalid_configuration() -> None:
    stream = make_stream()
    rule = {"id": "eu", "serve": {"variation": "on"}}
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(SetRules(flag_key="checkout", environment=PROD, rules=[rule, rule]))
    assert caught.value.details[0]["path"] == "rules"


def test_set_targets__new_targets__emits_targets_changed() -> None:
    stream = make_stream()
    targets = [
        {"variation": "on", "values": ["user-1", "user-2"]},
        {"variation": "off", "values": ["user-3"]},
    ]
    event = only_event(stream, SetTargets(flag_key="checkout", environment=PROD, targets=targets))
    assert event.type == EventType.TARGETS_CHANGED
    assert [c.path for c in read_payload(event).diff] == [  # type: ignore[attr-defined]
        "targets[0].values[1]",
        "targets[1]",
    ]


def test_set_targets__key_in_two_variations__raises_invalid_configuration() -> None:
    stream = make_stream()
    targets = [{"variation": "on", "values": ["user-1"]}, {"variation": "off", "values": ["user-1"]}]
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(SetTargets(flag_key="checkout", environment=PROD, targets=targets))
    assert caught.value.details[0]["path"] == "targets[1].values[0]"


# --- metadata ------------------------------------------------------------------------------------


def test_update_metadata__changed_fields__emits_changes_and_diff() -> None:
    stream = make_stream()
    event = only_event(
        stream,
        UpdateFlagMetadata(
            flag_key="checkout", name="Checkout", tags=("team-a",), owner="ann", description=None
        ),
    )
    payload = read_payload(event)
    assert payload.changes == {"name": "Checkout", "owner": "ann", "tags": ["team-a"]}  # type: ignore[attr-defined]
    assert [c.path for c in payload.diff] == ["name", "owner", "tags[0]"]  # type: ignore[attr-defined]
    assert stream.state.flag is not None and stream.state.flag.owner == "ann"


def test_update_metadata__explicit_none_owner__clears_owner() -> None:
    stream = make_stream()
    stream.run(UpdateFlagMetadata(flag_key="checkout", owner="ann"))
    stream.run(UpdateFlagMetadata(flag_key="checkout", owner=None))
    assert stream.state.flag is not None and stream.state.flag.owner is None


def test_update_metadata__same_values__is_a_no_op() -> None:
    stream = make_stream()
    assert stream.run(UpdateFlagMetadata(flag_key="checkout", name="", temporary=False)) == []


def test_update_metadata__variation_still_used__raises_invalid_configuration() -> None:
    stream = make_stream()
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(UpdateFlagMetadata(flag_key="checkout", variations=[{"key": "on", "value": True}]))
    paths = [d["path"] for d in caught.value.details]
    assert "environments.production.off_variation" in paths


def test_update_metadata__variation_value_of_wrong_kind__raises_invalid_configuration() -> None:
    stream = make_stream()
    with pytest.raises(InvalidConfiguration):
        stream.run(
            UpdateFlagMetadata(
                flag_key="checkout",
                variations=[{"key": "on", "value": "yes"}, {"key": "off", "value": False}],
            )
        )


def test_update_metadata__renamed_variation_values__applies_through_evolve() -> None:
    stream = make_stream()
    variations = [{"key": "on", "value": True, "name": "On"}, {"key": "off", "value": False}]
    stream.run(UpdateFlagMetadata(flag_key="checkout", variations=variations))
    assert stream.state.flag is not None and stream.state.flag.variations[0].name == "On"


# --- rollback ------------------------------------------------------------------------------------

ALERT = AlertInfo(fingerprint="abc123", labels={"alertname": "HighErrorRate"}, values={"error_rate": 0.2})


def test_roll_back__restored_config__emits_flag_rolled_back_with_alert() -> None:
    stream = make_stream()
    stream.run(EnableFlag(flag_key="checkout", environment=PROD))
    command = RollBackEnvironment(
        flag_key="checkout",
        environment=PROD,
        to_version=2,
        restored_config=EnvironmentConfig.model_validate(BASE_CONFIG),
        undone_versions=(3,),
        alert=ALERT,
        expected_version=3,
    )
    event = only_event(stream, command)
    payload = read_payload(event)
    assert event.type == EventType.FLAG_ROLLED_BACK
    assert (payload.to_version, payload.undone_versions, payload.alert) == (2, (3,), ALERT)  # type: ignore[attr-defined]
    assert stream.state.flag is not None and not stream.state.flag.environments[PROD].enabled
    assert stream.state.env_versions[PROD] == 4


def test_roll_back__environment_absent_then__disables_environment() -> None:
    stream = make_stream({**BASE_CONFIG, "enabled": True})
    stream.run(RollBackEnvironment(flag_key="checkout", environment=PROD, to_version=1, restored_config=None))
    assert stream.state.flag is not None and not stream.state.flag.environments[PROD].enabled


def test_roll_back__absent_now_and_then__raises_environment_not_found() -> None:
    stream = make_stream()
    with pytest.raises(EnvironmentNotFound):
        stream.run(
            RollBackEnvironment(
                flag_key="checkout", environment="staging", to_version=1, restored_config=None
            )
        )


def test_roll_back__to_current_version__raises_invalid_command() -> None:
    stream = make_stream()
    with pytest.raises(InvalidCommand) as caught:
        stream.run(
            RollBackEnvironment(flag_key="checkout", environment=PROD, to_version=2, restored_config=None)
        )
    assert caught.value.details[0]["path"] == "to_version"


def test_roll_back__same_config__is_a_no_op() -> None:
    stream = make_stream()
    command = RollBackEnvironment(
        flag_key="checkout",
        environment=PROD,
        to_version=1,
        restored_config=EnvironmentConfig.model_validate(BASE_CONFIG),
    )
    assert stream.run(command) == []


def test_roll_back__enabled_config_with_unknown_segment__raises_invalid_configuration() -> None:
    stream = make_stream()
    config = EnvironmentConfig.model_validate(
        {
            **BASE_CONFIG,
            "enabled": True,
            "rules": [
                {
                    "id": "r",
                    "when": {"attribute": "a", "op": "in_segment", "values": ["gone"]},
                    "serve": {"variation": "on"},
                }
            ],
        }
    )
    with pytest.raises(InvalidConfiguration) as caught:
        stream.run(
            RollBackEnvironment(flag_key="checkout", environment=PROD, to_version=1, restored_config=config)
        )
    assert caught.value.details[0]["path"] == "rules[0].when.values[0]"


def test_record_rollback_skipped__any_flag__always_emits_an_event() -> None:
    stream = make_stream()
    event = only_event(
        stream, RecordRollbackSkipped(flag_key="checkout", environment=PROD, why="cooldown", alert=ALERT)
    )
    payload = read_payload(event)
    assert event.type == EventType.ROLLBACK_SKIPPED and event.environment == PROD
    assert (payload.why, payload.alert) == ("cooldown", ALERT)  # type: ignore[attr-defined]
    assert stream.state.env_versions == {PROD: 2}  # a skipped rollback changes no environment


def test_decide__unsupported_command_type__raises_invalid_command() -> None:
    class Unknown(FlagCommand):
        pass

    stream = make_stream()
    with pytest.raises(InvalidCommand):
        stream.run(Unknown(flag_key="checkout"))
