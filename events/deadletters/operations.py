"""Operator actions recorded as events, and the dead-letter operations the API and CLI call.

Every purge and every redrive of dead letters is an event of the stream ``ops:dead-letters``
(:data:`DEAD_LETTERS_STREAM`): ``DeadLetterPurged`` and ``DeadLettersRedriven``
(:mod:`core.events`), sealed and hash-chained like any stream, appended with the optimistic
version check (a concurrent operator action moves the head: re-read it and retry), published by
the relay and skipped by projectors (``ops:`` prefix). The actor is the authenticated principal.

One action is one Postgres transaction: the dead letter is resolved (an ``UPDATE`` that refuses a
letter already resolved) and the event appended on the same connection, so both commit or
neither does — a failed append leaves the letter parked and nothing recorded, and the error
reaches the caller, who may simply try again.

Redrive: the letters are marked ``redriven`` with the event (their stage releases them in version
order, see :meth:`events.deadletters.DeadLetterStore.releasable`); after the commit the
:class:`Redriver` registered for their stage, if any, reprocesses them at once. A redriver that
fails leaves them to the stage.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol
from uuid import UUID

import asyncpg
import structlog
from pydantic import JsonValue

from core.envelope import GENESIS_HASH, Event, seal
from core.errors import FlagstreamError
from core.events import DeadLetterPurgedPayload, DeadLetterRef, DeadLettersRedrivenPayload, Payload, to_draft
from events.deadletters import (
    MAX_PAGE,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterStats,
    DeadLetterStore,
    Stage,
    export_dead_letter_metrics,
)
from events.errors import VersionConflict
from events.ports import EventStore
from events.resilience.classify import describe_error
from events.store.postgres import append_on

__all__ = [
    "DEAD_LETTERS_STREAM",
    "OPS_STREAM_PREFIX",
    "DeadLetterOperations",
    "OperationsContended",
    "OperationsJournal",
    "PostgresStreamHead",
    "RedriveResult",
    "Redriver",
    "RedriverRegistry",
    "StreamHead",
    "describe_letter",
    "refresh_dead_letter_metrics",
    "stream_head_of",
]

log = structlog.get_logger("events.deadletters.operations")

OPS_STREAM_PREFIX: Final = "ops:"
DEAD_LETTERS_STREAM: Final = "ops:dead-letters"
_MAX_MESSAGE: Final = 4096
_BACKOFF_BASE_SECONDS: Final = 0.005
_BACKOFF_CAP_SECONDS: Final = 0.25


class OperationsContended(FlagstreamError):
    """Other operator actions kept moving the stream's head; nothing was recorded. Retry."""

    code = "operations_contended"
    http_status = 503
    retriable = True


class StreamHead(Protocol):
    """``(version, hash)`` of a stream's last event; ``(0, GENESIS_HASH)`` for an empty stream."""

    async def __call__(self, stream_key: str) -> tuple[int, str]: ...


def stream_head_of(store: EventStore) -> StreamHead:
    """A :class:`StreamHead` reading the whole stream from ``store`` (fine for tests and short streams)."""

    async def head(stream_key: str) -> tuple[int, str]:
        events = await store.read_stream(stream_key)
        return (events[-1].version, events[-1].hash) if events else (0, GENESIS_HASH)

    return head


class PostgresStreamHead:
    """:class:`StreamHead` on the ``events`` table: one indexed row, however long the stream."""

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection) -> None:
        self._pool = pool

    async def __call__(self, stream_key: str) -> tuple[int, str]:
        row = await self._pool.fetchrow(
            "SELECT version, hash FROM events WHERE flag_key = $1 ORDER BY version DESC LIMIT 1", stream_key
        )
        return (0, GENESIS_HASH) if row is None else (int(row["version"]), str(row["hash"]))


class OperationsJournal:
    """Appends operator actions to their ``ops:`` stream, retrying when another action won the race.

    Share one journal per process: it serialises its own appends, so only other processes
    (API replicas, the CLI) can move the head under it — then it re-reads the head and retries
    after a jittered backoff, ``max_attempts`` times in all."""

    def __init__(
        self,
        store: EventStore,
        head: StreamHead,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], UUID] = uuid.uuid4,
        max_attempts: int = 10,
    ) -> None:
        self._store = store
        self._head = head
        self._clock = clock
        self._new_id = new_id
        self._max_attempts = max_attempts
        self._lock = asyncio.Lock()

    async def record(
        self,
        payload: Payload,
        *,
        actor: str,
        reason: str | None,
        correlation_id: str | None = None,
        stream: str = DEAD_LETTERS_STREAM,
        conn: asyncpg.Connection | None = None,
    ) -> Event:
        """Append the action's event; with ``conn``, inside the caller's transaction on it (the
        event then commits or rolls back with the action itself)."""
        if not stream.startswith(OPS_STREAM_PREFIX):
            raise ValueError(f"operator actions go to an {OPS_STREAM_PREFIX!r} stream, not {stream!r}")
        draft = to_draft(payload)
        last_conflict: VersionConflict | None = None
        async with self._lock:  # one writer per process; other processes are retried below
            for attempt in range(1, self._max_attempts + 1):
                version, prev_hash = await (self._head if conn is None else PostgresStreamHead(conn))(stream)
                event = seal(
                    draft,
                    event_id=self._new_id(),
                    flag_key=stream,
                    version=version + 1,
                    prev_hash=prev_hash,
                    occurred_at=self._clock(),
                    actor=actor,
                    reason=reason,
                    correlation_id=correlation_id,
                )
                try:
                    if conn is None:
                        await self._store.append([event])
                    else:
                        await append_on(conn, [event])
                except VersionConflict as e:
                    log.info(
                        "operations.append_conflict", stream=stream, attempt=attempt, version=version + 1
                    )
                    last_conflict = e
                    await asyncio.sleep(self._backoff(attempt))  # jittered backoff before a retry
                    continue
                log.info(
                    "operations.recorded", stream=stream, type=event.type, version=event.version, actor=actor
                )
                return event
        raise OperationsContended(
            f"{stream}: {self._max_attempts} concurrent appends won the race; nothing recorded"
        ) from last_conflict

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))


class Redriver(Protocol):
    """Reprocesses at once what a redrive freed at one stage, and returns how many it reprocessed.

    ``letters``: :meth:`DeadLetterStore.releasable` narrowed to the flags just redriven — the
    redriven letters and the waiting letters behind them whose flag has no parked blocker left —
    in (flag, version) order. Process them in that order and mark each done with
    :meth:`DeadLetterStore.mark_reprocessed`, as the stage worker does; stop at a flag's first
    failure. Whatever it leaves, the stage worker releases later."""

    async def __call__(self, letters: Sequence[DeadLetter]) -> int: ...


class RedriverRegistry:
    """``stage -> Redriver``, filled at process start; a stage without one relies on its worker."""

    def __init__(self, redrivers: Mapping[Stage, Redriver] | None = None) -> None:
        self._redrivers: dict[Stage, Redriver] = dict(redrivers or {})

    def register(self, stage: Stage, redriver: Redriver) -> None:
        self._redrivers[stage] = redriver

    def get(self, stage: Stage) -> Redriver | None:
        return self._redrivers.get(stage)


@dataclass(frozen=True, slots=True)
class RedriveResult:
    letters: list[DeadLetter]
    event: Event | None  # DeadLettersRedriven; None when nothing matched
    reprocessed: dict[str, int] = field(default_factory=dict)  # by stage, as the redrivers said
    failures: dict[str, str] = field(default_factory=dict)  # stage -> "ErrorClass: message"
    more: bool = False  # parked letters matching the filter remain (the limit was reached)

    def counts_by_stage(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for letter in self.letters:
            counts[letter.stage] = counts.get(letter.stage, 0) + 1
        return counts


def describe_letter(letter: DeadLetter) -> DeadLetterRef:
    """What an operator-action event says about ``letter``."""
    return DeadLetterRef(
        letter_id=letter.id,
        stage=letter.stage,
        flag_key=letter.flag_key,
        version=letter.version,
        event_id=letter.event_id,
        error_class=letter.error_class[:256],
        error_message=letter.error_message[:_MAX_MESSAGE],
    )


class DeadLetterOperations:
    """What operators do to dead letters: resolve them in the store, record it, redrive now."""

    def __init__(self, dlq: DeadLetterStore, journal: OperationsJournal, redrivers: RedriverRegistry) -> None:
        self.dlq = dlq
        self._journal = journal
        self._redrivers = redrivers

    async def purge(
        self, letter_id: int, *, actor: str, reason: str, correlation_id: str | None = None
    ) -> tuple[DeadLetter, Event]:
        """Purge a parked letter (its stage skips the event for good) and record ``DeadLetterPurged``."""
        async with self.dlq.transaction() as (dlq, conn):
            letter = await dlq.mark_purged(letter_id, actor, reason)
            payload = DeadLetterPurgedPayload(letter=describe_letter(letter))
            event = await self._journal.record(
                payload, actor=actor, reason=reason, correlation_id=correlation_id, conn=conn
            )
        log.info(
            "dead_letter.purged", letter_id=letter.id, stage=letter.stage, flag=letter.flag_key, actor=actor
        )
        return letter, event

    async def redrive(
        self, letter_id: int, *, actor: str, reason: str | None = None, correlation_id: str | None = None
    ) -> RedriveResult:
        async with self.dlq.transaction() as (dlq, conn):
            letter = await dlq.mark_redriven(letter_id, actor, reason)
            event = await self._record_redrive([letter], None, actor, reason, correlation_id, conn)
        return await self._finish_redrive([letter], event, more=False)

    async def redrive_matching(
        self,
        flt: DeadLetterFilter,
        *,
        actor: str,
        reason: str | None = None,
        limit: int = MAX_PAGE,
        described_filter: Mapping[str, JsonValue] | None = None,
        correlation_id: str | None = None,
    ) -> RedriveResult:
        """Redrive up to ``limit`` parked letters matching ``flt``, oldest first."""
        described = dict(described_filter) if described_filter is not None else None
        async with self.dlq.transaction() as (dlq, conn):
            letters = await dlq.mark_redriven_matching(flt, actor, reason, limit=limit)
            more = False
            if len(letters) >= min(limit, MAX_PAGE):
                more = bool((await dlq.list(flt, limit=1)).items)
            event = await self._record_redrive(letters, described, actor, reason, correlation_id, conn)
        return await self._finish_redrive(letters, event, more=more)

    async def _record_redrive(
        self,
        letters: list[DeadLetter],
        described_filter: dict[str, JsonValue] | None,
        actor: str,
        reason: str | None,
        correlation_id: str | None,
        conn: asyncpg.Connection,
    ) -> Event | None:
        """``DeadLettersRedriven`` for ``letters``, in the transaction that marked them (none: no event)."""
        if not letters:
            return None
        payload = DeadLettersRedrivenPayload(
            letters=tuple(describe_letter(letter) for letter in letters), filter=described_filter
        )
        return await self._journal.record(
            payload, actor=actor, reason=reason, correlation_id=correlation_id, conn=conn
        )

    async def _finish_redrive(
        self, letters: list[DeadLetter], event: Event | None, *, more: bool
    ) -> RedriveResult:
        """After the commit: the stages' redrivers reprocess what the redrive freed."""
        if not letters:
            return RedriveResult([], None, more=more)
        log.info("dead_letters.redriven", count=len(letters), actor=letters[0].resolved_by)
        reprocessed, failures = await self._run_redrivers(letters)
        return RedriveResult(letters, event, reprocessed, failures, more)

    async def _run_redrivers(self, letters: list[DeadLetter]) -> tuple[dict[str, int], dict[str, str]]:
        flags_by_stage: dict[Stage, set[str | None]] = {}
        for letter in letters:
            flags_by_stage.setdefault(letter.stage, set()).add(letter.flag_key)
        reprocessed: dict[str, int] = {}
        failures: dict[str, str] = {}
        for stage, flags in flags_by_stage.items():
            redriver = self._redrivers.get(stage)
            if redriver is None:
                continue
            # Only what the ordering rule lets through now (a flag with a parked blocker waits).
            freed = [x for x in await self.dlq.releasable(stage, limit=MAX_PAGE) if x.flag_key in flags]
            if not freed:
                continue
            try:
                reprocessed[stage] = await redriver(freed)
            except Exception as e:  # the letters stay redriven: the stage worker releases them
                error_class, message = describe_error(e)
                failures[stage] = f"{error_class}: {message}"
                log.warning(
                    "dead_letters.redriver_failed", stage=stage, error_class=error_class, count=len(freed)
                )
        return reprocessed, failures


async def refresh_dead_letter_metrics(dlq: DeadLetterStore) -> DeadLetterStats:
    """Set the dead-letter gauges (by stage and error class, oldest age, blocked flags) from Postgres."""
    stats = await dlq.stats()
    export_dead_letter_metrics(stats)
    return stats
