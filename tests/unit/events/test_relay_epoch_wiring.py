"""A relay with a log guard must be able to stamp the guard's epoch on what it publishes: a publisher
that cannot (a wrapper, say) would republish a lost log under the old epoch, and projectors would seek to
their stale checkpoints. The relay refuses such wiring when it is built, not silently at run time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from core.envelope import Event
from events.ports import PublishedRecord
from events.relay.log_guard import LogGuard
from events.relay.relay import Relay


class _Plain:
    async def publish(self, events: Sequence[Event]) -> Sequence[PublishedRecord]:
        return []


class _Stamping(_Plain):
    log_epoch = 0


_OUTBOX: Any = object()  # never read: nothing runs


def _guard() -> LogGuard:
    pool: Any = object()  # never used: nothing runs
    return LogGuard(pool, "flag-events", bootstrap="127.0.0.1:9", topics=[])


def test_relay__guard_and_a_publisher_without_log_epoch__refused_naming_it() -> None:
    with pytest.raises(TypeError, match="_Plain"):
        Relay(_OUTBOX, _Plain(), guard=_guard())


def test_relay__guard_and_a_stamping_publisher__built() -> None:
    relay = Relay(_OUTBOX, _Stamping(), guard=_guard())

    assert relay.log_resets == 0


def test_relay__no_guard__any_publisher() -> None:
    assert Relay(_OUTBOX, _Plain()).log_resets == 0
