"""Dead letters of the rollback worker (stage ``rollback``): what it could not do is parked, not lost.

- An alert whose handling fails *permanently* (a domain error of the compensating command, a
  record the worker cannot act on) or whose *retriable* failures outlast the worker's retries is
  parked with the alert event itself (``event_body``), its stream (``alert:<fingerprint>``) as
  the letter's flag key, the error, the attempts and the Kafka coordinates. Only then is its
  offset committed.
- A record that is not an event at all is parked raw (no flag).
- Redrive: operators mark the letter redriven (API ``POST /api/v1/dead-letters/{id}/redrive`` or
  ``flagstream dlq redrive``); the running worker releases it (:meth:`RollbackLetters.release`,
  every ``release_interval`` seconds) — it runs the rollback decision for that alert again, as for
  a redelivered alert: what was already done is seen as done (the decision, the idempotency key,
  the expected version), a still-failing alert is parked again. The decision is the worker's
  usual one, so an alert older than the look-back window is now *stale* (cancelled).

Alerts do not depend on each other, so a rollback letter blocks nothing but its own alert stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from core.envelope import Event
from events.deadletters import (
    DeadLetter,
    DeadLetterGate,
    DeadLetterStore,
    KafkaCoordinates,
    NewDeadLetter,
    Stage,
)
from events.deadletters.gate import ReleaseReport

__all__ = ["ROLLBACK_STAGE", "RollbackLetters"]

ROLLBACK_STAGE: Final[Stage] = "rollback"

log = structlog.get_logger(__name__)


class RollbackLetters:
    """Parks what the rollback worker cannot do, and hands redriven letters back to it."""

    def __init__(self, dlq: DeadLetterStore) -> None:
        self.dlq = dlq
        self._gate = DeadLetterGate(dlq, ROLLBACK_STAGE)

    async def park_alert(
        self, event: Event, error: BaseException, *, attempts: int, kafka: KafkaCoordinates | None
    ) -> DeadLetter:
        letter = await self.dlq.park(
            NewDeadLetter.for_event(ROLLBACK_STAGE, event, error, attempts=attempts, kafka=kafka)
        )
        log.error(
            "rollback.dead_lettered",
            letter=letter.id,
            alert_event=str(event.event_id),
            stream=event.flag_key,
            error_class=letter.error_class,
            attempts=attempts,
        )
        return letter

    async def park_record(
        self, raw: bytes, error: BaseException, *, kafka: KafkaCoordinates | None
    ) -> DeadLetter:
        letter = await self.dlq.park(
            NewDeadLetter.for_record(ROLLBACK_STAGE, raw, error, flag_key=None, kafka=kafka)
        )
        log.error("rollback.record_dead_lettered", letter=letter.id, error_class=letter.error_class)
        return letter

    async def release(self, handle: Callable[[Event], Awaitable[object]]) -> ReleaseReport:
        """Run ``handle`` (the worker's decision) again for every redriven rollback letter; one that
        fails for good again is parked again, a retriable failure propagates (tried next time)."""
        return await self._gate.release(handle)
