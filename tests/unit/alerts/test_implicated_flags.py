"""The pure rollback decision: which flags a firing alert implicates, and to which version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from core.alerts import (
    Implicated,
    MetricAlertFiredPayload,
    NotImplicated,
    decide_flag,
    fingerprint_of,
    implicated_flags,
)
from core.commands import (
    CreateFlag,
    DisableFlag,
    EnableFlag,
    FlagCommand,
    RecordRollbackSkipped,
    RollBackEnvironment,
    SetEnvironmentConfig,
)
from core.decide import decide
from core.envelope import Event, seal
from core.events import AlertInfo
from core.evolve import config_at, evolve
from core.model import AutoRollback, EnvironmentConfig, Flag, Serve
from core.state import Catalog, FlagState

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LOOKBACK = timedelta(minutes=30)
ALERT_ID = "00000000-0000-0000-0000-00000000a1e7"
OPTED_IN = EnvironmentConfig(
    enabled=False,
    off_variation="off",
    default=Serve(variation="on"),
    auto_rollback=AutoRollback(enabled=True, cooldown_seconds=600),
)


@dataclass
class Stream:
    key: str
    state: FlagState = field(init=False)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = FlagState(key=self.key)

    def run(
        self, command: FlagCommand, at: datetime, *, actor: str = "alice", cause: str | None = None
    ) -> None:
        for draft in decide(self.state, command, Catalog()):
            event = seal(
                draft,
                event_id=UUID(int=len(self.events) + 1),
                flag_key=self.key,
                version=self.state.version + 1,
                prev_hash=self.state.last_hash,
                occurred_at=at,
                actor=actor,
                causation_id=cause,
            )
            self.state = evolve(self.state, event)
            self.events.append(event)


def alert(**labels: str) -> MetricAlertFiredPayload:
    return MetricAlertFiredPayload(
        fingerprint="abc123",
        source="alertmanager",
        starts_at=T0,
        labels={"alertname": "HighErrorRate", **labels},
    )


def flag_with_bad_change(
    key: str = "checkout",
    config: EnvironmentConfig = OPTED_IN,
    changed_at: datetime = T0 - timedelta(minutes=5),
) -> Stream:
    """v1 created (prod opted in, off) long ago; v2 enables prod shortly before the alert."""
    stream = Stream(key)
    stream.run(
        CreateFlag(flag_key=key, flag=Flag(key=key, environments={"prod": config})), T0 - timedelta(days=2)
    )
    stream.run(EnableFlag(flag_key=key, environment="prod"), changed_at)
    return stream


def test_explicit_flag_label__change_in_window__rolls_back_to_version_before_it() -> None:
    stream = flag_with_bad_change()

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0,
        lookback=LOOKBACK,
    )

    assert isinstance(decision, Implicated)
    assert (decision.to_version, decision.decided_version, decision.undone_versions) == (1, 2, (2,))
    assert decision.restored_config == config_at(stream.events, 1, "prod")
    assert decision.restored_config is not None and not decision.restored_config.enabled
    assert decision.explicit


def test_explicit_flag_version_label__names_the_change_to_undo() -> None:
    stream = flag_with_bad_change(changed_at=T0 - timedelta(hours=5))  # outside the window
    stream.run(
        SetEnvironmentConfig(
            flag_key="checkout",
            environment="prod",
            config=OPTED_IN.model_copy(update={"enabled": True, "default": Serve(variation="off")}),
        ),
        T0 - timedelta(hours=4),
    )

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod", flag_version="2"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0,
        lookback=LOOKBACK,
    )

    assert isinstance(decision, Implicated)
    assert (decision.to_version, decision.undone_versions) == (1, (2, 3))


def test_lookback__only_flags_changed_inside_the_window_are_implicated() -> None:
    recent = flag_with_bad_change("recent", changed_at=T0 - timedelta(minutes=10))
    old = flag_with_bad_change("old", changed_at=T0 - timedelta(minutes=31))

    decisions = implicated_flags(
        alert(environment="prod"),
        ALERT_ID,
        {"recent": recent.events, "old": old.events},
        now=T0,
        lookback=LOOKBACK,
    )

    [decision] = decisions
    assert isinstance(decision, Implicated) and decision.flag_key == "recent" and not decision.explicit


def test_lookback__first_change_in_window_is_undone_with_every_later_one() -> None:
    stream = flag_with_bad_change(changed_at=T0 - timedelta(minutes=20))
    stream.run(DisableFlag(flag_key="checkout", environment="prod"), T0 - timedelta(minutes=15))
    stream.run(EnableFlag(flag_key="checkout", environment="prod"), T0 - timedelta(minutes=10))

    [decision] = implicated_flags(
        alert(environment="prod"), ALERT_ID, {"checkout": stream.events}, now=T0, lookback=LOOKBACK
    )

    assert isinstance(decision, Implicated)
    assert (decision.to_version, decision.undone_versions) == (1, (2, 3, 4))


def test_opted_out_flag__is_not_rolled_back() -> None:
    stream = flag_with_bad_change(config=OPTED_IN.model_copy(update={"auto_rollback": AutoRollback()}))

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0,
        lookback=LOOKBACK,
    )

    assert isinstance(decision, NotImplicated) and decision.outcome == "opted_out"


@pytest.mark.parametrize(
    "labels", [{"environment": "prod"}, {"flag": "checkout"}, {"flag": "ghost", "environment": "prod"}]
)
def test_no_implicated_flag__nothing_to_roll_back(labels: dict[str, str]) -> None:
    unrelated = flag_with_bad_change(changed_at=T0 - timedelta(hours=3))

    decisions = implicated_flags(
        alert(**labels), ALERT_ID, {"checkout": unrelated.events}, now=T0, lookback=LOOKBACK
    )

    assert all(isinstance(d, NotImplicated) and d.outcome == "not_implicated" for d in decisions)


def test_lookback__opted_out_and_unchanged_flags_are_not_candidates() -> None:
    opted_out = flag_with_bad_change(
        "manual", config=OPTED_IN.model_copy(update={"auto_rollback": AutoRollback()})
    )
    unchanged = flag_with_bad_change("quiet", changed_at=T0 - timedelta(hours=2))

    decisions = implicated_flags(
        alert(environment="prod"),
        ALERT_ID,
        {"manual": opted_out.events, "quiet": unchanged.events},
        now=T0,
        lookback=LOOKBACK,
    )

    assert decisions == []


def test_change_after_alert_started__is_a_skip_that_names_who() -> None:
    stream = flag_with_bad_change()
    stream.run(DisableFlag(flag_key="checkout", environment="prod"), T0 + timedelta(seconds=30), actor="bob")

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0 + timedelta(minutes=1),
        lookback=LOOKBACK,
    )

    assert isinstance(decision, NotImplicated) and decision.outcome == "changed_after_alert"
    assert "bob" in decision.why and decision.decided_version == 3


def test_already_handled__an_event_caused_by_this_alert_means_nothing_more_to_do() -> None:
    stream = flag_with_bad_change()
    stream.run(
        RollBackEnvironment(
            flag_key="checkout",
            environment="prod",
            to_version=1,
            restored_config=config_at(stream.events, 1, "prod"),
            undone_versions=(2,),
            alert=AlertInfo(fingerprint="abc123"),
        ),
        T0 + timedelta(seconds=5),
        actor="rollback-worker",
        cause=ALERT_ID,
    )

    decision = decide_flag(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        stream.events,
        environment="prod",
        explicit=True,
        now=T0 + timedelta(seconds=6),
        lookback=LOOKBACK,
    )

    assert isinstance(decision, NotImplicated) and decision.outcome == "already_handled"


def test_cooldown__an_automatic_rollback_within_it_blocks_a_second_one() -> None:
    stream = flag_with_bad_change(changed_at=T0 - timedelta(minutes=9))
    stream.run(
        RollBackEnvironment(
            flag_key="checkout",
            environment="prod",
            to_version=1,
            restored_config=config_at(stream.events, 1, "prod"),
            undone_versions=(2,),
            alert=AlertInfo(fingerprint="other"),
        ),
        T0 - timedelta(minutes=8),
        actor="rollback-worker",
        cause="another-alert",
    )
    stream.run(EnableFlag(flag_key="checkout", environment="prod"), T0 - timedelta(minutes=2))

    inside = decide_flag(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        stream.events,
        environment="prod",
        explicit=True,
        now=T0,
        lookback=LOOKBACK,
    )
    after = decide_flag(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        stream.events,
        environment="prod",
        explicit=True,
        now=T0 + timedelta(minutes=3),
        lookback=LOOKBACK,
    )

    assert isinstance(inside, NotImplicated) and inside.outcome == "cooldown"
    assert isinstance(after, Implicated) and after.to_version == 1


def test_rollbacks_are_never_the_change_undone__restoring_what_is_in_force_is_not_implicated() -> None:
    stream = flag_with_bad_change(changed_at=T0 - timedelta(minutes=20))
    stream.run(
        RollBackEnvironment(
            flag_key="checkout",
            environment="prod",
            to_version=1,
            restored_config=config_at(stream.events, 1, "prod"),
            undone_versions=(2,),
        ),
        T0 - timedelta(minutes=19),
        actor="carol",
    )

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0,
        lookback=LOOKBACK,
    )

    assert isinstance(decision, NotImplicated) and decision.outcome == "not_implicated"
    assert "already has the configuration of version 1" in decision.why


def test_skip_records_do_not_count_as_changes() -> None:
    stream = flag_with_bad_change()
    stream.run(
        RecordRollbackSkipped(flag_key="checkout", environment="prod", why="dry_run: test"),
        T0 + timedelta(seconds=1),
        actor="rollback-worker",
        cause="earlier-alert",
    )

    [decision] = implicated_flags(
        alert(flag="checkout", environment="prod"),
        ALERT_ID,
        {"checkout": stream.events},
        now=T0 + timedelta(seconds=2),
        lookback=LOOKBACK,
    )

    assert isinstance(decision, Implicated) and decision.decided_version == 3


def test_alert_without_environment_label__implicates_nothing() -> None:
    [decision] = implicated_flags(alert(flag="checkout"), ALERT_ID, {}, now=T0, lookback=LOOKBACK)

    assert isinstance(decision, NotImplicated) and "environment" in decision.why


def test_fingerprint_of__ignores_label_order_and_differs_by_value() -> None:
    assert fingerprint_of({"a": "1", "b": "2"}) == fingerprint_of({"b": "2", "a": "1"})
    assert fingerprint_of({"a": "1"}) != fingerprint_of({"a": "2"})
    assert len(fingerprint_of({"a": "1"})) == 16
