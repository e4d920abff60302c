"""The Kafka adapter: topic specs, producer/consumer factories, CloudEvents-style headers, a publisher.

aiokafka's defaults are not safe for an audit log: the producer defaults to ``acks=1`` (a leader
crash loses acknowledged records) and consumers to auto-commit (offsets committed before the
work is done). Everything here sets them explicitly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from core.envelope import Event, format_instant
from events.errors import PublishFailed, PublishRejected, PublishTimeout

__all__ = [
    "FLAG_EVENTS_TOPIC",
    "METRIC_ALERTS_TOPIC",
    "KafkaPublisher",
    "TopicSpec",
    "ensure_topics",
    "flag_events_spec",
    "headers_for",
    "make_consumer",
    "make_producer",
    "metric_alerts_spec",
]

log = structlog.get_logger(__name__)

FLAG_EVENTS_TOPIC = "flagstream.flag-events"
METRIC_ALERTS_TOPIC = "flagstream.metric-alerts"

# The audit log is never deleted or compacted away.
_TRANSIENT = (KafkaConnectionError, KafkaTimeoutError)
_KEEP_FOREVER: Mapping[str, str] = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


def flag_events_spec(name: str = FLAG_EVENTS_TOPIC, *, partitions: int = 6) -> TopicSpec:
    return TopicSpec(name, partitions, 1, dict(_KEEP_FOREVER))


def metric_alerts_spec(name: str = METRIC_ALERTS_TOPIC, *, partitions: int = 3) -> TopicSpec:
    return TopicSpec(name, partitions, 1, dict(_KEEP_FOREVER))


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], *, request_timeout_ms: int = 10_000
) -> None:
    """Create the topics that do not exist yet (an existing topic is left as it is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            topic = NewTopic(
                spec.name, spec.partitions, spec.replication_factor, topic_configs=dict(spec.config)
            )
            try:
                await admin.create_topics([topic])
                log.info("kafka.topic_created", topic=spec.name, partitions=spec.partitions)
            except TopicAlreadyExistsError:
                log.info("kafka.topic_exists", topic=spec.name)
    except KafkaError as e:
        raise PublishFailed(f"cannot create Kafka topics: {e}") from e
    finally:
        await admin.close()


def headers_for(event: Event) -> list[tuple[str, bytes]]:
    """CloudEvents-style (binary mode, Kafka protocol binding) headers, plus our own ``fs_*``."""
    values = {
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_type": event.type,
        "ce_source": "flagstream",
        "ce_time": format_instant(event.occurred_at),
        "ce_subject": event.flag_key,
        "fs_version": str(event.version),
        "fs_schema_version": str(event.schema_version),
    }
    return [(k, v.encode("utf-8")) for k, v in values.items()]


def make_producer(
    bootstrap: str,
    *,
    client_id: str = "flagstream",
    compression_type: str | None = "gzip",
    linger_ms: int = 5,
    request_timeout_ms: int = 10_000,
) -> AIOKafkaProducer:
    """A producer for the audit log: every in-sync replica must have a record before it counts.

    ``enable_idempotence=False``: tansu (the local broker) fails ``InitProducerId``. On Apache
    Kafka you want it on (no duplicates from internal retries, order kept with several in-flight
    requests); consumers deduplicate by ``(flag_key, version)`` either way. aiokafka keeps one
    batch in flight per partition, so its retries cannot reorder a partition.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        compression_type=compression_type,
        linger_ms=linger_ms,
        request_timeout_ms=request_timeout_ms,
    )


def make_consumer(
    bootstrap: str,
    *topics: str,
    group_id: str | None = None,
    client_id: str = "flagstream",
    isolation_level: str = "read_committed",
    **options: Any,
) -> AIOKafkaConsumer:
    """A consumer that commits only when told to and starts from the beginning of the log."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        **options,
    )


class KafkaPublisher:
    """Sends events keyed by stream key (one partition keeps a flag's order) and awaits every ack.

    A whole batch is bounded by ``send_timeout`` seconds: when the broker is down, ``publish``
    raises :class:`PublishTimeout` instead of waiting for ever.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, *, send_timeout: float = 15.0) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout = send_timeout

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            await asyncio.wait_for(self._send_all(events), self._timeout)
        except TimeoutError as e:
            raise PublishTimeout(f"{len(events)} events not acknowledged within {self._timeout}s") from e
        except KafkaError as e:
            raise _classify(e, self.topic) from e

    async def _send_all(self, events: Sequence[Event]) -> None:
        pending = []
        for event in events:
            pending.append(
                await self._producer.send(
                    self.topic,
                    key=event.flag_key.encode("utf-8"),
                    value=event.to_json().encode("utf-8"),
                    headers=headers_for(event),
                )
            )
        await asyncio.gather(*pending)


def _classify(error: KafkaError, topic: str) -> PublishFailed | PublishRejected:
    """Errors aiokafka marks retriable, and lost connections, are worth retrying; the rest is not."""
    if getattr(error, "retriable", False) or isinstance(error, _TRANSIENT):
        return PublishFailed(f"publish to {topic} failed: {error!r}")
    return PublishRejected(f"publish to {topic} refused: {error!r}")
