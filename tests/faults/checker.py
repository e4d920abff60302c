"""A Jepsen-style checker: the history of acknowledged commands against Postgres, Kafka and Redis.

Invariants, each failure a line in :attr:`CheckResult.violations`:

1. Postgres: every stream is whole (versions 1..n, hash chain intact: nothing half-written), and
   every acknowledged command's events are there, by event id, on its flag (else: *lost*).
2. Kafka, read from the beginning (bounded by the expected count, not by end offsets: tansu
   answers those wrongly): each flag's records sit in one partition and, in offset order, either
   carry the next version or repeat an earlier one byte for byte (same event id and hash: a
   redelivery). Never a gap, a reorder, or an event Postgres does not hold; finally complete.
3. Redis: ``fs:state:{flag}`` equals a fresh replay of the Postgres log for every flag. A state
   ahead of Postgres, or different at the same version, is an event applied twice or wrongly
   (*duplicated*); a state behind is not caught up yet.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from aiokafka import AIOKafkaConsumer

from core.envelope import Event, verify_chain
from core.evolve import replay
from core.state import FlagState
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.readmodel import RedisReadModel
from tests.faults.load import CommandRecord

__all__ = ["CheckResult", "KafkaRecord", "Observation", "check", "observe", "wait_until_consistent"]


@dataclass
class KafkaRecord:
    partition: int
    offset: int
    key: str
    event: Event | None


@dataclass
class Observation:
    """What the three stores hold at one moment."""

    postgres: dict[str, list[Event]]
    kafka: list[KafkaRecord] | None  # None: not read (an earlier check failed)
    redis: dict[str, FlagState]


@dataclass
class CheckResult:
    lost: int = 0
    duplicated: int = 0
    behind: int = 0
    redeliveries: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


async def read_postgres(database_url: str) -> dict[str, list[Event]]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT flag_key, body FROM events ORDER BY flag_key, version", timeout=30)
    finally:
        await conn.close(timeout=10)
    streams: dict[str, list[Event]] = defaultdict(list)
    for row in rows:
        streams[row["flag_key"]].append(Event.from_json(row["body"]))
    return dict(streams)


async def read_kafka(bootstrap: str, topic: str, expected: int, within: float) -> list[KafkaRecord]:
    """Every record from the beginning, until ``expected`` distinct events are seen or ``within`` s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    records: list[KafkaRecord] = []
    seen: set[tuple[str, int]] = set()
    try:
        await consumer.start()
        deadline = time.monotonic() + within
        while len(seen) < expected and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                for record in batch:
                    try:
                        event: Event | None = Event.from_json(record.value)
                    except ValueError:
                        event = None
                    key = record.key.decode() if record.key else ""
                    records.append(KafkaRecord(tp.partition, record.offset, key, event))
                    if event is not None:
                        seen.add((event.flag_key, event.version))
    finally:
        await consumer.stop()
    return records


async def read_redis(redis_url: str, namespace: str, flags: Iterable[str]) -> dict[str, FlagState]:
    client = make_redis(redis_url)
    try:
        model = RedisReadModel(client, Keyspace(namespace))
        return {flag: await model.load_flag_state(flag) for flag in flags}
    finally:
        await client.aclose()


def _check_postgres(history: list[CommandRecord], pg: dict[str, list[Event]], result: CheckResult) -> None:
    by_id = {str(e.event_id): e for events in pg.values() for e in events}
    for key, events in pg.items():
        if (broken := verify_chain(events, flag_key=key)) is not None:
            result.violations.append(
                f"postgres {key}: {broken.problem} at v{broken.version}: {broken.detail}"
            )
    for record in history:
        if record.outcome != "ok":
            continue
        last = pg[record.flag][-1].version if record.flag in pg else 0
        missing = [i for i in record.event_ids if i not in by_id or by_id[i].flag_key != record.flag]
        if missing or (record.version or 0) > last:
            result.lost += 1
            result.violations.append(
                f"lost: {record.op} {record.flag}/{record.environment} acked "
                f"v{record.version} events {missing or record.event_ids} (postgres at v{last})"
            )


def _check_kafka(records: list[KafkaRecord], pg: dict[str, list[Event]], result: CheckResult) -> None:
    per_flag: dict[str, list[KafkaRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.event is None:
            result.violations.append(f"kafka p{record.partition}@{record.offset}: not an event")
            continue
        per_flag[record.event.flag_key].append(record)
    for key, events in pg.items():
        flag_records = per_flag.get(key, [])
        partitions = {r.partition for r in flag_records}
        if len(partitions) > 1:
            result.violations.append(f"kafka {key}: spread over partitions {sorted(partitions)}")
        top = 0
        for record in flag_records:
            event = record.event
            assert event is not None
            stored = events[event.version - 1] if 0 < event.version <= len(events) else None
            where = f"kafka {key} p{record.partition}@{record.offset} v{event.version}"
            if stored is None or stored.event_id != event.event_id or stored.hash != event.hash:
                result.violations.append(f"{where}: not the event postgres holds at that version")
            elif event.version == top + 1:
                top = event.version
            elif event.version <= top:
                result.redeliveries += 1
            else:
                result.violations.append(f"{where}: gap or reorder (after v{top})")
                break
        if top < len(events):
            result.violations.append(f"kafka {key}: holds v1..v{top}, postgres v{len(events)}")


def _check_redis(
    pg: dict[str, list[Event]], redis: dict[str, FlagState], exclude: set[str], result: CheckResult
) -> None:
    for key, events in pg.items():
        if key in exclude or events[0].type != "FlagCreated":  # segments, journals: not flags
            continue
        expected, actual = replay(events, key), redis.get(key, FlagState(key=key))
        if actual.version < expected.version:
            result.behind += 1
            result.violations.append(f"redis {key}: at v{actual.version}, postgres at v{expected.version}")
        elif actual != expected:
            result.duplicated += 1
            result.violations.append(
                f"redis {key}: v{actual.version} differs from the replay of postgres (v{expected.version})"
            )


def check(
    history: list[CommandRecord], observation: Observation, *, exclude: Iterable[str] = ()
) -> CheckResult:
    """Every invariant of the module docstring over one observation."""
    result = CheckResult()
    _check_postgres(history, observation.postgres, result)
    _check_redis(observation.postgres, observation.redis, set(exclude), result)
    if observation.kafka is not None:
        _check_kafka(observation.kafka, observation.postgres, result)
    return result


async def observe(
    database_url: str,
    redis_url: str,
    namespace: str,
    bootstrap: str,
    topic: str,
    *,
    kafka_within: float = 5.0,
    read_kafka_always: bool = False,
    history: list[CommandRecord] | None = None,
    exclude: Iterable[str] = (),
) -> Observation:
    """Read the three stores (Kafka only when Postgres and Redis already agree, or when asked)."""
    pg = await read_postgres(database_url)
    redis = await read_redis(redis_url, namespace, pg)
    observation = Observation(pg, None, redis)
    if read_kafka_always or check(history or [], observation, exclude=exclude).ok:
        expected = sum(len(events) for events in pg.values())
        observation.kafka = await read_kafka(bootstrap, topic, expected, kafka_within)
    return observation


async def wait_until_consistent(
    history: list[CommandRecord],
    *,
    database_url: str,
    redis_url: str,
    namespace: str,
    bootstrap: str,
    topic: str,
    within: float,
    exclude: Iterable[str] = (),
) -> tuple[CheckResult, float]:
    """Check until every invariant holds (or ``within`` s pass); returns the last result and when."""
    started = time.monotonic()
    while True:
        try:
            observation = await observe(
                database_url, redis_url, namespace, bootstrap, topic, history=history, exclude=exclude
            )
            result = check(history, observation, exclude=exclude)
            if observation.kafka is None:
                result.violations.append("kafka not read: postgres and redis do not agree yet")
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            result = CheckResult(violations=[f"cannot observe: {type(e).__name__}: {e}"])
        elapsed = time.monotonic() - started
        if result.ok or elapsed > within:
            return result, elapsed
        await asyncio.sleep(0.5)  # pacing between two full observations (each is itself bounded)
