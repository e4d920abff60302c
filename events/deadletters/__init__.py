"""The dead-letter queue, durable in Postgres (table ``dead_letters``, migration 0010).

A *permanent* failure (see :mod:`events.resilience.classify`) of the relay, the projector or the
rollback worker parks the event — or the raw record when it could not even be read — here, with
where it failed, the error, attempts, first/last failure times and the Kafka coordinates when
known. Retriable failures never come here: they are retried, or wait behind an open breaker.

Ordering rule (:mod:`events.deadletters.ordering`, the one place every stage asks): while a flag
has a parked letter at a stage, its events from the blocker's version on must not pass that stage;
they wait behind it until it is redriven or purged. Earlier versions (seen again after a rewind,
a Redis wipe or a republish) pass. Other flags keep flowing. Letters are never deleted: redrive
and purge *resolve* them.
"""

from __future__ import annotations

from events.deadletters.gate import DeadLetterGate, Outcome, ReleaseReport
from events.deadletters.models import (
    MAX_PAGE,
    STAGES,
    WAITING,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterPage,
    DeadLetterResolved,
    DeadLetterStats,
    DeadLetterStatus,
    KafkaCoordinates,
    NewDeadLetter,
    Stage,
)
from events.deadletters.ordering import Blockers, repark
from events.deadletters.store import DeadLetterStore

__all__ = [
    "MAX_PAGE",
    "STAGES",
    "WAITING",
    "Blockers",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterGate",
    "DeadLetterNotFound",
    "DeadLetterPage",
    "DeadLetterResolved",
    "DeadLetterStats",
    "DeadLetterStatus",
    "DeadLetterStore",
    "KafkaCoordinates",
    "NewDeadLetter",
    "Outcome",
    "ReleaseReport",
    "Stage",
    "export_dead_letter_metrics",
    "repark",
]


def export_dead_letter_metrics(stats: DeadLetterStats) -> None:
    """Set the dead-letter gauges (count by class, oldest age, blocked flags) for every stage."""
    from monitoring import metrics

    for stage in STAGES:
        metrics.set_dead_letters(stage, stats.counts.get(stage, {}), stats.oldest_age_seconds.get(stage, 0.0))
        metrics.set_blocked_flags(stage, stats.blocked_flags.get(stage, 0))
