"""Properties over random command sequences (Hypothesis, derandomized: the same cases every run).

For any sequence of commands run the way the command service runs them (decide, seal, evolve;
refused commands write nothing):
- replaying every event from version 1 — also after a JSON round trip — gives exactly the state
  built incrementally;
- the hash chain verifies;
- every environment-changing event has a non-empty diff (no-ops write nothing) and leaves the
  environment with exactly the config it carries;
- a rollback restores the configuration that was in force at ``to_version``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
from core.envelope import Event, verify_chain
from core.errors import DomainError
from core.events import EnvironmentChangedPayload, read_payload
from core.evolve import config_at, environment_changes_after, replay
from core.model import Flag
from tests.unit.core._streams import FlagStream

KEY = "checkout"
ENVS = st.sampled_from(["production", "staging"])
VARIATIONS = st.sampled_from(["on", "off"] * 6 + ["maybe"])  # "maybe" does not exist: refused
RULE_IDS = st.sampled_from(["r1", "r2", "r3"])

serves = st.one_of(
    st.builds(lambda v: {"variation": v}, VARIATIONS),
    st.lists(
        st.tuples(st.sampled_from(["on", "off"]), st.integers(1, 100)),
        min_size=1,
        max_size=2,
        unique_by=lambda t: t[0],
    ).map(lambda ws: {"rollout": [{"variation": v, "weight": w} for v, w in ws]}),
)
rules = st.lists(
    st.builds(
        lambda i, v, s: {"id": i, "when": {"attribute": "country", "op": "eq", "values": [v]}, "serve": s},
        RULE_IDS,
        st.sampled_from(["US", "FR"]),
        serves,
    ),
    max_size=3,
    unique_by=lambda r: r["id"],
)
targets = st.lists(
    st.builds(
        lambda v, keys: {"variation": v, "values": keys},
        st.sampled_from(["on", "off"]),
        st.lists(st.sampled_from(["u1", "u2", "u3"]), min_size=1, max_size=2, unique=True),
    ),
    max_size=2,
    unique_by=lambda t: t["variation"],
)
configs = st.builds(
    lambda enabled, r, t, d: {
        "enabled": enabled,
        "off_variation": "off",
        "rules": r,
        "targets": t,
        "default": d,
    },
    st.booleans(),
    rules,
    targets,
    st.one_of(st.none(), serves),
)
weights = st.lists(
    st.tuples(st.sampled_from(["on", "off"]), st.integers(0, 10)),
    min_size=1,
    max_size=2,
    unique_by=lambda t: t[0],
).map(lambda ws: [{"variation": v, "weight": w} for v, w in ws])

set_config = st.builds(
    lambda e, c: SetEnvironmentConfig(flag_key=KEY, environment=e, config=c), ENVS, configs
)
rollback = st.builds(lambda e, back: ("rollback", e, back), ENVS, st.integers(1, 5))
commands = st.one_of(
    set_config,
    set_config,
    set_config,
    rollback,
    rollback,
    st.builds(lambda e: EnableFlag(flag_key=KEY, environment=e), ENVS),
    st.builds(lambda e: EnableFlag(flag_key=KEY, environment=e), ENVS),
    st.builds(lambda e: DisableFlag(flag_key=KEY, environment=e), ENVS),
    st.builds(
        lambda e, r, w: SetRollout(flag_key=KEY, environment=e, rule_id=r, rollout=w),
        ENVS,
        st.one_of(st.none(), RULE_IDS),
        weights,
    ),
    st.builds(lambda e, r: SetRules(flag_key=KEY, environment=e, rules=r), ENVS, rules),
    st.builds(lambda e, t: SetTargets(flag_key=KEY, environment=e, targets=t), ENVS, targets),
    st.builds(
        lambda n, o: UpdateFlagMetadata(flag_key=KEY, name=n, owner=o),
        st.sampled_from(["A", "B"]),
        st.sampled_from([None, "ann"]),
    ),
    st.builds(lambda e: RecordRollbackSkipped(flag_key=KEY, environment=e, why="cooldown"), ENVS),
    st.sampled_from([ArchiveFlag(flag_key=KEY)] + [RestoreFlag(flag_key=KEY)] * 3),
)


INITIAL = Flag.model_validate(
    {
        "key": KEY,
        "environments": {
            "production": {"enabled": True, "default": {"variation": "off"}},
            "staging": {"off_variation": "off", "rules": [{"id": "r1", "serve": {"variation": "on"}}]},
        },
    }
)


def run(stream: FlagStream, command: FlagCommand | tuple[str, str, int]) -> None:
    if isinstance(command, tuple):
        _, environment, back = command
        to_version = max(1, stream.state.version - back)
        command = RollBackEnvironment(
            flag_key=KEY,
            environment=environment,
            to_version=to_version,
            restored_config=config_at(stream.events, to_version, environment),
            undone_versions=environment_changes_after(stream.events, to_version, environment),
        )
    before = stream.state
    try:
        new_events = stream.run(command.model_copy(update={"expected_version": before.version}))
    except DomainError:
        assert stream.state == before
        return
    for event in new_events:
        payload = read_payload(event)
        if isinstance(payload, EnvironmentChangedPayload):
            assert payload.diff, "an environment event without a diff should have been a no-op"
            assert stream.state.flag is not None
            assert stream.state.flag.environments[event.environment or ""] == payload.config
    if isinstance(command, RollBackEnvironment) and new_events and command.restored_config is not None:
        assert stream.state.flag is not None
        assert stream.state.flag.environments[command.environment] == command.restored_config


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(commands, min_size=5, max_size=40))
def test_replay__random_command_sequence__equals_incremental_state(sequence: list[Any]) -> None:
    stream = FlagStream(KEY)
    stream.run(CreateFlag(flag_key=KEY, flag=INITIAL))
    for command in sequence:
        run(stream, command)
    assert replay(stream.events) == stream.state
    assert replay([Event.from_json(e.to_json()) for e in stream.events]) == stream.state
    assert verify_chain(stream.events) is None
    assert [e.version for e in stream.events] == list(range(1, stream.state.version + 1))
