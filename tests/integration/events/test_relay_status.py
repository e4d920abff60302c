"""relay_status: written at once on a significant change, otherwise at most once per interval;
read back by the API with ``read_relay_status``."""

from __future__ import annotations

import asyncpg

from events.relay.status import RelayStatusWriter, read_relay_status


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_status_writer__breaker_change__written_at_once_backlog_change__throttled(
    pool: asyncpg.Pool,
) -> None:
    clock = _Clock()
    writer = RelayStatusWriter(pool, "r1", min_interval=1.0, clock=clock)
    await writer.update(backlog=3)
    (first,) = await read_relay_status(pool)
    assert (first.breaker_state, first.backlog, first.degraded) == ("closed", 3, False)

    clock.now = 0.5
    await writer.update(backlog=7)  # within the interval, nothing significant: not written yet
    assert (await read_relay_status(pool))[0].backlog == 3
    await writer.update(breaker_state="open", last_error="PublishTimeout: ...")  # significant
    (opened,) = await read_relay_status(pool)
    assert (opened.breaker_state, opened.backlog, opened.degraded) == ("open", 7, True)

    clock.now = 2.0
    await writer.update(backlog=9)
    assert (await read_relay_status(pool))[0].backlog == 9


async def test_status_writer__log_reset__counted_across_writers(pool: asyncpg.Pool) -> None:
    await RelayStatusWriter(pool, "r2").count_log_reset()
    restarted = RelayStatusWriter(pool, "r2")
    await restarted.count_log_reset()
    (status,) = await read_relay_status(pool)
    assert status.log_resets == 2 and restarted.current.log_resets == 2
