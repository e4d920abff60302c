"""The as-of fold keeps only what one environment needs, yet agrees with a full replay."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from core.commands import ArchiveFlag, DisableFlag, UpdateFlagMetadata
from events.audit.asof import _Collector, _materialise
from tests.integration.audit.support import T0, apply_commands, checkout_story


@pytest.mark.parametrize("until", range(1, 8))
def test_fold__prefix_of_a_story__equals_full_replay_restricted_to_production(until: int) -> None:
    commands = [
        *checkout_story(),
        DisableFlag(flag_key="new-checkout", environment="staging"),
        UpdateFlagMetadata(flag_key="new-checkout", name="New checkout"),
        ArchiveFlag(flag_key="new-checkout"),
    ]
    events, states = apply_commands("new-checkout", commands)
    instant = T0 + timedelta(hours=until - 1, minutes=30)
    collector = _Collector("production", instant, None)
    for event in events:
        raw = event.to_json().encode()
        collector.add(raw, orjson.loads(raw))

    got = _materialise("new-checkout", collector.flags["new-checkout"], "production")

    expected = states[until - 1]
    assert expected.flag is not None and got.flag is not None
    assert got.flag.environments == {"production": expected.flag.environments["production"]}
    assert got.flag.model_copy(update={"environments": {}}) == expected.flag.model_copy(
        update={"environments": {}}
    )
    assert (got.version, got.last_hash, got.updated_at) == (
        expected.version,
        expected.last_hash,
        expected.updated_at,
    )
    assert got.env_versions == {"production": expected.env_versions["production"]}
