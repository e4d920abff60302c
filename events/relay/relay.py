"""The relay: committed events from the Postgres outbox to Kafka, in order, at least once.

Each round reads the events after the checkpoint — in ``(txid, seq)`` order and only below the
xid horizon, so none that commits late is ever skipped (see :mod:`events.store.postgres`) — publishes
them, waits for every ack, and only then moves the checkpoint. A crash between publish and
checkpoint republishes the batch: consumers deduplicate by ``(flag_key, version)``.

Around that loop (issue 4; docs/write-side.md):

- every publish goes through the circuit breaker and a bounded retry policy
  (:func:`events.resilience.call_resilient`); while the breaker is open the relay does not call
  Kafka at all — it sleeps until the breaker's reset timeout, then one trial goes through;
- a permanent error for a batch is isolated event by event: the poison event is parked in the
  dead-letter queue and its flag held behind it; other flags keep flowing
  (:mod:`events.relay.letters`);
- a broker that lost its log is noticed (:mod:`events.relay.log_guard`): the topics are recreated and
  the checkpoint goes back to the beginning, so everything is republished in order;
- the relay's state goes to ``relay_status`` for the API (:mod:`events.relay.status`).

It wakes on the store's ``NOTIFY`` and polls as a fallback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from core.envelope import Event
from events.deadletters.ordering import Blockers
from events.errors import StoreUnavailable
from events.ports import EventPublisher, Outbox, PublishedRecord, RelayPosition, StoredEvent
from events.relay.letters import RelayLetters
from events.relay.log_guard import LogGuard, StampsLogEpoch
from events.relay.status import RelayStatusWriter
from events.resilience import AsyncCircuitBreaker, BreakerState, CircuitOpen, RetryPolicy, call_resilient
from events.resilience import classify as classify_error
from events.store.db import Listener
from monitoring import metrics

__all__ = ["DEFAULT_RETRY", "Relay"]

log = structlog.get_logger(__name__)

DEFAULT_RETRY = RetryPolicy(max_attempts=4, max_delay=10.0, initial_wait=0.1, max_wait=2.0)
_RELEASE_EVERY = 1.0  # seconds between looks for letters redriven by operators
_BACKLOG_EVERY = 1.0


class Relay:
    def __init__(
        self,
        outbox: Outbox,
        publisher: EventPublisher,
        *,
        name: str = "flag-events",
        topic: str = "flagstream.flag-events",
        batch_size: int = 500,
        poll_interval: float = 0.25,
        retry_delay: float = 1.0,
        listener: Listener | None = None,
        breaker: AsyncCircuitBreaker | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        letters: RelayLetters | None = None,
        guard: LogGuard | None = None,
        status: RelayStatusWriter | None = None,
        probe_interval: float = 30.0,
    ) -> None:
        self._stamped: StampsLogEpoch | None = None  # the publisher, when a guard's epoch is stamped
        if guard is not None:
            if not isinstance(publisher, StampsLogEpoch):
                # without the stamp a republished log looks like the old epoch to the projectors, which
                # would seek to their stale checkpoints and skip events (what the guard exists to prevent)
                raise TypeError(
                    f"a relay with a log guard needs a publisher that stamps the log epoch "
                    f"(a log_epoch attribute, as KafkaPublisher has); got {type(publisher).__name__}"
                )
            self._stamped = publisher
        self.name = name
        self._outbox = outbox
        self._publisher = publisher
        self._topic = topic
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry_delay = retry_delay
        self._listener = listener
        self.breaker = breaker or AsyncCircuitBreaker(f"kafka-relay-{name}", reset_timeout=5.0)
        self.breaker.add_listener(self._on_breaker_transition)
        self._retry = retry
        self._letters = letters
        self._guard = guard
        self._status = status
        self._probe_interval = probe_interval
        self._position: RelayPosition | None = None
        self._guard_loaded = False
        self._probe_due = True  # at start: the broker may have lost its log while we were away
        self._last_probe = 0.0
        self._last_release = float("-inf")
        self.published = 0
        self.log_resets = 0

    @property
    def position(self) -> RelayPosition | None:
        return self._position

    async def run_once(self) -> int:
        """Publish one batch after the checkpoint; returns how many events were handled
        (published, held behind a dead letter or parked)."""
        if self._position is None:
            self._position = await self._outbox.load_checkpoint(self.name)
        await self._load_guard()
        await self._release_letters()
        batch = await self._outbox.read_committed_after(self._position, self._batch_size)
        if not batch:
            return 0
        records = await self.publish_batch(batch)
        if self._guard is not None and self._guard.regressed(records):
            await self._recover_lost_log("acknowledged offset went backwards")
            return len(batch)
        if self._guard is not None:
            await self._guard.record(records)
        last = batch[-1].position
        await self._outbox.save_checkpoint(self.name, last)
        self._position = last
        self.published += len(records)
        for topic, count in Counter(record.topic for record in records).items():
            metrics.record_events_published(topic, count)
        await self._report(last_published_at=datetime.now(UTC), last_error=None)
        log.debug("relay.published", relay=self.name, count=len(records), last_seq=last.seq)
        return len(batch)

    async def publish_batch(self, batch: list[StoredEvent]) -> list[PublishedRecord]:
        """Publish a batch in order; with a dead-letter queue, hold blocked flags and isolate a
        permanently failing event. Raises :class:`CircuitOpen` or a retriable error (the batch
        is kept: the checkpoint does not move), or, without a dead-letter queue, a permanent one."""
        events = [stored.event for stored in batch]
        if self._letters is None:
            return await self._send(events)
        purged = await self._letters.purged([e.event_id for e in events])
        blocked = await self._letters.blocked()
        await self._report(blocked_flags=len(blocked))
        ready: list[Event] = []
        for event in events:
            if event.event_id in purged:
                continue
            if blocked.holds(event.flag_key, event.version):  # the ordering rule (deadletters.ordering)
                await self._letters.park_held(event)
            else:
                ready.append(event)
        try:
            return await self._send(ready)
        except Exception as e:
            if isinstance(e, CircuitOpen) or classify_error(e) == "retriable":
                raise
            log.warning(
                "relay.batch_rejected", relay=self.name, count=len(ready), error_class=type(e).__name__
            )
            return await self._publish_isolating(ready, blocked)

    async def _publish_isolating(self, events: Sequence[Event], blocked: Blockers) -> list[PublishedRecord]:
        assert self._letters is not None
        records: list[PublishedRecord] = []
        for event in events:
            if blocked.holds(event.flag_key, event.version):
                await self._letters.park_held(event)
                continue
            try:
                records += await self._send([event])
            except Exception as e:
                if isinstance(e, CircuitOpen) or classify_error(e) == "retriable":
                    raise
                await self._letters.park_poison(event, e)
                blocked.block(event.flag_key, event.version)
        await self._report(blocked_flags=len(blocked))
        return records

    async def _send(self, events: Sequence[Event]) -> list[PublishedRecord]:
        if not events:
            return []
        try:
            return list(await call_resilient(self.breaker, self._retry, self._publisher.publish, events))
        except CircuitOpen:
            raise
        except Exception as e:
            metrics.record_kafka_send_failure(self._topic, e)
            raise

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Publish until nothing committed is left below the horizon (or ``stop``); the count."""
        total = 0
        while (stop is None or not stop.is_set()) and (handled := await self.run_once()) > 0:
            total += handled
            if handled < self._batch_size:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the batch in hand is always finished first."""
        log.info("relay.started", relay=self.name, topic=self._topic)
        last_backlog = 0.0
        while not stop.is_set():
            if self._listener is not None:
                await self._listener.ensure()
                self._listener.woken.clear()
            if time.monotonic() - last_backlog >= _BACKLOG_EVERY:
                last_backlog = time.monotonic()
                await self._report_backlog()
            try:
                await self._probe_if_due()
                handled = await self.drain(stop)
            except CircuitOpen as e:
                await self._report(last_error=str(e))
                log.info("relay.paused_breaker_open", relay=self.name, retry_after_s=round(e.retry_after, 2))
                await self._pause(stop, max(self.breaker.retry_after(), 0.05), wake_on_notify=False)
                continue
            except Exception as e:
                await self._on_round_failed(e)
                await self._pause(stop, self._retry_delay, wake_on_notify=False)
                continue
            if handled == 0:
                await self._pause(stop, self._poll_interval)
        await self._report_backlog()
        if self._listener is not None:
            await self._listener.close()
        log.info("relay.stopped", relay=self.name, published=self.published)

    async def _on_round_failed(self, error: Exception) -> None:
        """Every failure keeps the batch (the checkpoint did not move); the next round retries."""
        self._probe_due = True  # whatever failed, the broker may have restarted meanwhile
        code = getattr(error, "code", type(error).__name__)
        log.warning(
            "relay.round_failed",
            relay=self.name,
            error_code=code,
            error=str(error),
            retriable=classify_error(error) == "retriable",
        )
        await self._report(last_error=f"{type(error).__name__}: {error}")

    async def _load_guard(self) -> None:
        if self._guard is not None and not self._guard_loaded:
            await self._guard.load()
            self._guard_loaded = True
            self._stamp_epoch()

    def _stamp_epoch(self) -> None:
        """What the publisher stamps on every record (``fs_log_epoch``) is the guard's epoch."""
        if self._guard is not None and self._stamped is not None:
            self._stamped.log_epoch = self._guard.epoch

    async def _probe_if_due(self) -> None:
        if self._guard is None:
            return
        if not self._probe_due and time.monotonic() - self._last_probe < self._probe_interval:
            return
        await self._load_guard()
        lost = await self.breaker.call(self._guard.probe)  # Kafka down: counts, and no hammering
        self._probe_due, self._last_probe = False, time.monotonic()
        if lost:
            await self._recover_lost_log(f"probe: {len(lost)} partitions lost their records")

    async def _recover_lost_log(self, why: str) -> None:
        assert self._guard is not None
        log.error("relay.log_lost_republishing", relay=self.name, reason=why)
        await self._guard.recover()
        self._stamp_epoch()
        await self._outbox.reset_checkpoint(self.name)
        self._position = RelayPosition()
        self.log_resets += 1
        if self._status is not None:
            await self._status.count_log_reset()
        await self._report(last_error=f"log lost ({why}); republishing from the beginning")

    async def _release_letters(self) -> None:
        if self._letters is None or time.monotonic() - self._last_release < _RELEASE_EVERY:
            return
        self._last_release = time.monotonic()
        report = await self._letters.release(self._send)
        if report.records and self._guard is not None:
            await self._guard.record(report.records)

    def _on_breaker_transition(self, name: str, old: BreakerState, new: BreakerState) -> None:
        if new is BreakerState.CLOSED:
            self._probe_due = True  # Kafka is back: check it still holds what it acknowledged

    async def _report(self, **changes: object) -> None:
        blocked = changes.get("blocked_flags")
        if isinstance(blocked, int):
            metrics.set_blocked_flags("relay", blocked)
        if self._status is not None:
            await self._status.update(breaker_state=self.breaker.state.value, **changes)

    async def _report_backlog(self) -> None:
        try:
            count, oldest = await self._outbox.backlog(self._position or RelayPosition())
        except StoreUnavailable as e:
            log.warning("relay.backlog_unknown", relay=self.name, error=e.message)
            return
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        metrics.set_relay_backlog(count, max(age, 0.0))
        await self._report(backlog=count, oldest_unpublished_at=oldest)

    async def _pause(self, stop: asyncio.Event, delay: float, *, wake_on_notify: bool = True) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if self._listener is not None and wake_on_notify:
            waiters.append(asyncio.ensure_future(self._listener.woken.wait()))
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
