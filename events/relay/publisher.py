"""The Kafka publisher: routes each event to its topic, keeps every partition in order, awaits acks.

Order across failures — why a retry cannot reorder a partition (no ``v1, v3, v1, v2, v3``)
-----------------------------------------------------------------------------------------
A partition's share of a publish is sent as explicit record batches (``create_batch`` /
``send_batch``), one at a time: the next batch of a partition is handed to the producer only
after the previous one was acknowledged. A record batch is appended by the broker as a whole or
not at all. So whenever a batch reaches the log — even late, after the publish that sent it had
timed out — everything before it in its partition is already in the log: a partition can gain
duplicates of a run it already holds (``v1, v2, v3, v1, v2``), never a record ahead of a missing
one. Consumers deduplicate by ``(flag_key, version)``.

After a retriable failure the producer is also replaced (when the publisher was given a
``renew`` factory): the old one is stopped within a bound, so batches it still buffered are
dropped or delivered before the new producer sends anything, rather than trickling in later.

Errors are translated here: :class:`PublishTimeout` / :class:`PublishFailed` (retriable) and
:class:`PublishRejected` (permanent: e.g. a record larger than ``max_record_bytes``, which the
broker would refuse with ``MessageSizeTooLarge``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from core.envelope import Event
from events.errors import PublishFailed, PublishRejected, PublishTimeout
from events.kafka.records import METRIC_ALERTS_TOPIC, headers_for, topic_for
from events.ports import PublishedRecord

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "KafkaPublisher", "RecordTooLarge"]

log = structlog.get_logger(__name__)

DEFAULT_MAX_RECORD_BYTES: Final = 1_000_000  # under Apache Kafka's default message.max.bytes (1 MiB)
_TRANSIENT = (KafkaConnectionError, KafkaTimeoutError)
_PARTITIONER = DefaultPartitioner()


class RecordTooLarge(PublishRejected):
    """One event's record exceeds the largest record the log accepts: it can never be published."""

    code = "record_too_large"


class KafkaPublisher:
    """Sends events keyed by stream key (one partition keeps a stream's order) and awaits every ack.

    ``topic``: the flag-events topic; ``alert:`` streams go to ``metric_alerts_topic``
    (:func:`events.kafka.records.topic_for`). A whole publish is bounded by ``send_timeout`` seconds.
    ``renew``: a factory for a fresh (not started) producer; with it the publisher replaces its
    producer after a failed publish and owns it (:meth:`close`). ``producer`` may then be None.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        topic: str,
        *,
        send_timeout: float = 15.0,
        metric_alerts_topic: str = METRIC_ALERTS_TOPIC,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        renew: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        if producer is None and renew is None:
            raise ValueError("a publisher needs a producer or a factory for one")
        self._producer = producer
        self._started = producer is not None  # a producer handed in is started by its owner
        self.topic = topic
        self.metric_alerts_topic = metric_alerts_topic
        self._timeout = send_timeout
        self._max_record_bytes = max_record_bytes
        self._renew = renew
        self.renewals = 0
        self.log_epoch = 0  # stamped on every record (fs_log_epoch); set by the relay's log guard

    def topic_of(self, event: Event) -> str:
        return topic_for(
            event.flag_key, flag_events_topic=self.topic, metric_alerts_topic=self.metric_alerts_topic
        )

    async def publish(self, events: Sequence[Event]) -> list[PublishedRecord]:
        """Publish ``events`` (in order per stream) and return where each landed, in input order."""
        if not events:
            return []
        self._check_sizes(events)
        try:
            return await asyncio.wait_for(self._send_all(events), self._timeout)
        except TimeoutError as e:
            await self._discard_producer()
            raise PublishTimeout(f"{len(events)} events not acknowledged within {self._timeout}s") from e
        except KafkaError as e:
            error = _translate(e, self.topic)
            if isinstance(error, PublishFailed):
                await self._discard_producer()
            raise error from e

    async def close(self) -> None:
        """Stop the producer if this publisher owns it (made with ``renew``)."""
        if self._renew is not None:
            await self._discard_producer()

    def _check_sizes(self, events: Sequence[Event]) -> None:
        for event in events:
            size = len(event.to_json().encode("utf-8")) + len(event.flag_key.encode("utf-8"))
            if size > self._max_record_bytes:
                raise RecordTooLarge(
                    f"event {event.event_id} of {event.flag_key!r} v{event.version} is {size} bytes;"
                    f" the log accepts at most {self._max_record_bytes}"
                )

    async def _current(self) -> AIOKafkaProducer:
        if self._producer is None:
            assert self._renew is not None
            self._producer, self._started = self._renew(), False
        if not self._started:
            await self._producer.start()
            self._started = True
        return self._producer

    async def _discard_producer(self) -> None:
        if self._renew is None or self._producer is None:
            return
        producer, self._producer, self._started = self._producer, None, False
        self.renewals += 1
        try:
            await asyncio.wait_for(producer.stop(), self._timeout)
        except (TimeoutError, KafkaError, OSError) as e:
            log.warning("kafka.producer_stop_failed", error_class=type(e).__name__, error=str(e))

    async def _send_all(self, events: Sequence[Event]) -> list[PublishedRecord]:
        producer = await self._current()
        by_partition: dict[tuple[str, int], list[int]] = {}
        for index, event in enumerate(events):
            topic = self.topic_of(event)
            partition = await _partition_of(producer, topic, event.flag_key)
            by_partition.setdefault((topic, partition), []).append(index)
        results: list[PublishedRecord | None] = [None] * len(events)
        sends = [
            _send_partition(
                producer, topic, partition, [(i, events[i]) for i in indexes], results, self.log_epoch
            )
            for (topic, partition), indexes in by_partition.items()
        ]
        await asyncio.gather(*sends)
        return [r for r in results if r is not None]


async def _partition_of(producer: AIOKafkaProducer, topic: str, key: str) -> int:
    """The partition the Java client and aiokafka's ``send`` would choose (murmur2 of the key)."""
    partitions = await producer.partitions_for(topic)
    ordered = sorted(partitions)
    return int(_PARTITIONER(key.encode("utf-8"), ordered, ordered))


async def _send_partition(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    indexed: list[tuple[int, Event]],
    results: list[PublishedRecord | None],
    log_epoch: int = 0,
) -> None:
    """One record batch after another, each only once the previous one is acknowledged."""
    position = 0
    while position < len(indexed):
        batch = producer.create_batch()
        taken: list[tuple[int, Event]] = []
        for index, event in indexed[position:]:
            appended = batch.append(
                timestamp=None,
                key=event.flag_key.encode("utf-8"),
                value=event.to_json().encode("utf-8"),
                headers=headers_for(event, log_epoch=log_epoch),
            )
            if appended is None:
                break
            taken.append((index, event))
        if not taken:
            raise RecordTooLarge(f"event {indexed[position][1].event_id} does not fit in a record batch")
        batch.close()
        delivered = await producer.send_batch(batch, topic, partition=partition)
        metadata = await delivered
        for offset, (index, event) in enumerate(taken, start=metadata.offset):
            results[index] = PublishedRecord(event.event_id, topic, partition, offset)
        position += len(taken)


def _translate(error: KafkaError, topic: str) -> PublishFailed | PublishRejected:
    """Errors aiokafka marks retriable, and lost connections, are worth retrying; the rest is not."""
    if getattr(error, "retriable", False) or isinstance(error, _TRANSIENT):
        return PublishFailed(f"publish to {topic} failed: {error!r}")
    return PublishRejected(f"publish to {topic} refused: {error!r}")
