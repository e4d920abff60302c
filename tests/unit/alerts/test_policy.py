"""The rollback worker's policy: whose confirmation delay applies."""

from __future__ import annotations

from core.model import AutoRollback
from events.rollback.worker import RollbackPolicy
from runtime.settings import load_settings


def test_confirmation__flag_keeps_model_default__worker_default_applies() -> None:
    policy = RollbackPolicy(default_confirmation_seconds=5.0)

    assert policy.confirmation_seconds(AutoRollback(enabled=True)) == 5.0


def test_confirmation__flag_sets_its_own__flag_wins() -> None:
    policy = RollbackPolicy(default_confirmation_seconds=5.0)

    assert policy.confirmation_seconds(AutoRollback(enabled=True, confirmation_delay_seconds=0)) == 0
    assert policy.confirmation_seconds(AutoRollback(enabled=True, confirmation_delay_seconds=120)) == 120


def test_policy_from_settings__lookback_default_and_dry_run() -> None:
    settings = load_settings(
        rollback_lookback_seconds=60, rollback_default_confirmation_seconds=2, rollback_dry_run=True
    )

    policy = RollbackPolicy.from_settings(settings)

    assert (policy.lookback.total_seconds(), policy.default_confirmation_seconds, policy.dry_run) == (
        60,
        2,
        True,
    )
