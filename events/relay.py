"""The relay: committed events from the Postgres outbox to Kafka, in order, at least once.

Each round reads the events after the checkpoint — in ``(txid, seq)`` order and only below the
xid horizon, so none that commits late is ever skipped (see :mod:`events.store`) — publishes
them, waits for every ack, and only then moves the checkpoint. A crash between publish and
checkpoint republishes the batch: consumers deduplicate by ``(flag_key, version)``.

It wakes on the store's ``NOTIFY`` and polls as a fallback (notifications sent while the LISTEN
connection was down are lost; rows also become readable when an unrelated transaction ends).
Failures back off and retry from the checkpoint; a circuit breaker, bounded retries and the
dead-letter queue (issue 4) wrap :meth:`Relay.publish_batch` without changing this loop.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from events.db import Listener
from events.errors import PublishFailed, PublishRejected, StoreUnavailable
from events.ports import EventPublisher, Outbox, RelayPosition, StoredEvent
from monitoring import metrics

__all__ = ["Relay"]

log = structlog.get_logger(__name__)


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
    ) -> None:
        self.name = name
        self._outbox = outbox
        self._publisher = publisher
        self._topic = topic
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry_delay = retry_delay
        self._listener = listener
        self._position: RelayPosition | None = None
        self.published = 0

    @property
    def position(self) -> RelayPosition | None:
        return self._position

    async def run_once(self) -> int:
        """Publish one batch after the checkpoint; returns how many events were published."""
        if self._position is None:
            self._position = await self._outbox.load_checkpoint(self.name)
        batch = await self._outbox.read_committed_after(self._position, self._batch_size)
        if not batch:
            return 0
        await self.publish_batch(batch)
        last = batch[-1].position
        await self._outbox.save_checkpoint(self.name, last)
        self._position = last
        self.published += len(batch)
        metrics.record_events_published(self._topic, len(batch))
        log.debug("relay.published", relay=self.name, count=len(batch), last_seq=last.seq)
        return len(batch)

    async def publish_batch(self, batch: list[StoredEvent]) -> None:
        """The one call that leaves the process: the hook for breakers and retries (issue 4)."""
        try:
            await self._publisher.publish([stored.event for stored in batch])
        except (PublishFailed, PublishRejected) as e:
            metrics.record_kafka_send_failure(self._topic, e)
            raise

    async def drain(self) -> int:
        """Publish until nothing committed is left below the horizon; returns the count."""
        total = 0
        while (published := await self.run_once()) > 0:
            total += published
            if published < self._batch_size:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the batch in hand is always finished first."""
        log.info("relay.started", relay=self.name, topic=self._topic)
        last_backlog_check = 0.0
        while not stop.is_set():
            if self._listener is not None:
                await self._listener.ensure()
                self._listener.woken.clear()
            try:
                published = await self.drain()
                if time.monotonic() - last_backlog_check > 5.0:
                    last_backlog_check = time.monotonic()
                    await self._report_backlog()
            except (PublishFailed, PublishRejected, StoreUnavailable) as e:
                log.warning("relay.round_failed", relay=self.name, error_code=e.code, error=e.message)
                await self._pause(stop, self._retry_delay, wake_on_notify=False)
                continue
            if published == 0:
                await self._pause(stop, self._poll_interval)
        if self._listener is not None:
            await self._listener.close()
        log.info("relay.stopped", relay=self.name, published=self.published)

    async def _report_backlog(self) -> None:
        count, oldest = await self._outbox.backlog(self._position or RelayPosition())
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        metrics.set_relay_backlog(count, max(age, 0.0))

    async def _pause(self, stop: asyncio.Event, delay: float, *, wake_on_notify: bool = True) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if self._listener is not None and wake_on_notify:
            waiters.append(asyncio.ensure_future(self._listener.woken.wait()))
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
