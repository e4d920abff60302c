"""Replay benchmark: generate N events over F flags, then time rebuild, verify and as-of.

    python -m benchmarks.replay --events 1000000 --flags 10000
    python -m benchmarks.replay --events 100000            # a quick run

Servers: ``--bootstrap`` / ``KAFKA_BOOTSTRAP_SERVERS`` (required) and, for verify against
Postgres, ``--database-url`` / ``DATABASE_URL`` (a fresh database is created on that server,
filled with COPY and dropped at the end). A new topic is used per run.

Events are real: version 1 of each flag is a ``FlagCreated``, later versions are
``RolloutChanged`` / ``FlagEnabled`` / ``FlagDisabled`` of one environment carrying the full
resulting config and a diff, hash-chained like the platform's. Bodies are serialised with orjson
(sorted keys, ASCII, ints only: byte-identical to ``core.envelope.canonical_json``, checked on a
sample). ``occurred_at`` grows by one millisecond per event. "peak RSS" is the process's peak so
far (``ru_maxrss``), an upper bound of each phase's own peak.

Phases timed: **rebuild** (``projections.rebuild.ShadowRebuild.catch_up`` into a throw-away
namespace when ``--redis-url`` / ``REDIS_URL`` is given; a plain replay of every stream with
``core.fastfold``, each state validated once at the end; and, unless ``--skip-evolve``, the same
replay through ``core.evolve.evolve``), **verify** (Kafka, then Kafka +
Postgres), **as-of** of one environment at the log's midpoint (full read, and bounded by
``offsets_for_times`` with a publish grace). Peak memory: ``ru_maxrss`` after each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.envelope import GENESIS_HASH, Event, canonical_json, format_instant
from core.evolve import evolve
from core.fastfold import empty_flag_state, flag_state, fold_flag
from core.state import FlagState
from events.audit import EnvironmentSnapshot, StreamSettings, environment_as_of, read_batches, verify_log
from events.store.db import apply_migrations

START = datetime(2026, 1, 1, tzinfo=UTC)
ENVIRONMENTS = ("production", "staging")
_CHANGE_TYPES = ("RolloutChanged", "RolloutChanged", "FlagEnabled", "FlagDisabled")


def _config(enabled: bool, weight: int) -> dict[str, Any]:
    return {"enabled": enabled, "off_variation": "off", "default": {"rollout": [
        {"variation": "on", "weight": weight}, {"variation": "off", "weight": 100 - weight}]}}


def _flag(key: str) -> dict[str, Any]:
    return {"key": key, "name": key, "kind": "boolean",
            "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "environments": {env: _config(False, 0) for env in ENVIRONMENTS}}


def _seal(fields: dict[str, Any]) -> bytes:
    fields["hash"] = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def generate(events: int, flags: int, seed: int = 7) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """``(flag_key, body, envelope fields)`` in time order; flags get versions round-robin-ish."""
    rng = random.Random(seed)
    keys = [f"flag-{i:06d}" for i in range(flags)]
    last: dict[str, tuple[int, str, dict[str, dict[str, Any]]]] = {}
    for n in range(events):
        key = keys[n] if n < flags else keys[rng.randrange(flags)]
        version, prev_hash, configs = last.get(key, (0, GENESIS_HASH, {}))
        fields: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "schema_version": 1,
            "flag_key": key, "version": version + 1,
            "occurred_at": format_instant(START + timedelta(milliseconds=n)), "actor": f"user-{n % 50}",
            "reason": None, "correlation_id": None, "causation_id": None, "prev_hash": prev_hash,
        }
        if version == 0:
            flag = _flag(key)
            fields.update(type="FlagCreated", environment=None, payload={"flag": flag})
            configs = dict(flag["environments"])
        else:
            env = ENVIRONMENTS[rng.randrange(len(ENVIRONMENTS))]
            kind = _CHANGE_TYPES[rng.randrange(len(_CHANGE_TYPES))]
            before = configs[env]
            weight = before["default"]["rollout"][0]["weight"]
            after = _config(kind != "FlagDisabled" and (kind == "FlagEnabled" or before["enabled"]),
                            rng.randrange(101) if kind == "RolloutChanged" else weight)
            diff = [{"path": p, "before": b, "after": a} for p, b, a in (
                ("enabled", before["enabled"], after["enabled"]),
                ("default.rollout[0].weight", weight, after["default"]["rollout"][0]["weight"])) if a != b]
            payload: dict[str, Any] = {"config": after, "diff": diff}
            if kind == "RolloutChanged":
                payload["rule_id"] = None
            fields.update(type=kind, environment=env, payload=payload)
            configs = {**configs, env: after}
        body = _seal(fields)
        last[key] = (version + 1, fields["hash"], configs)
        yield key, body, fields


def _check_sample(body: bytes) -> None:
    event = Event.from_json(body)
    assert event.is_intact() and canonical_json(orjson.loads(body)).encode() == body, "not canonical"


async def produce_all(bootstrap: str, topic: str, partitions: int, events: int, flags: int) -> None:
    """Produce the generated log; record timestamps = occurred_at (a relay publishing at once)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                compression_type="gzip", linger_ms=50, max_batch_size=1_048_576,
                                max_request_size=8_388_608)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for n, (key, body, _fields) in enumerate(generate(events, flags)):
            if n % 100_000 == 0:
                _check_sample(body)
            occurred_ms = int(START.timestamp() * 1000) + n
            pending.append(await producer.send(topic, body, key=key.encode(), timestamp_ms=occurred_ms))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _row(fields: dict[str, Any], body: bytes) -> tuple[Any, ...]:
    occurred = datetime.fromisoformat(fields["occurred_at"].replace("Z", "+00:00"))
    return (uuid.UUID(fields["event_id"]), fields["flag_key"], fields["version"], fields["type"],
            fields["environment"], occurred, fields["actor"], fields["hash"], body.decode())


async def copy_to_postgres(url: str, events: int, flags: int) -> None:
    """The same log (generation is deterministic) into the ``events`` table, COPY in chunks."""
    await apply_migrations(url)
    conn = await asyncpg.connect(url)
    columns = ["event_id", "flag_key", "version", "type", "environment", "occurred_at", "actor", "hash",
               "body"]
    try:
        chunk: list[tuple[Any, ...]] = []
        for _, body, fields in generate(events, flags):
            chunk.append(_row(fields, body))
            if len(chunk) >= 50_000:
                await conn.copy_records_to_table("events", records=chunk, columns=columns)
                chunk.clear()
        await conn.copy_records_to_table("events", records=chunk, columns=columns)
    finally:
        await conn.close()


async def rebuild_by_evolve(settings: StreamSettings) -> int:
    """Replay every stream through the core's ``evolve`` (the fold a projection rebuild performs)."""
    states: dict[str, FlagState] = {}
    count = 0
    async for batch in read_batches(settings):
        for record in batch:
            event = record.event()
            state = states.get(event.flag_key) or FlagState(key=event.flag_key)
            if event.version == state.version + 1:
                states[event.flag_key] = evolve(state, event)
            count += 1
    return count


async def rebuild_by_fastfold(settings: StreamSettings) -> int:
    """Replay every stream with ``core.fastfold`` (parsed JSON, no pydantic), validate each state once."""
    states: dict[str, dict[str, Any]] = {}
    count = 0
    async for batch in read_batches(settings):
        for record in batch:
            fields = orjson.loads(record.value)
            key = fields["flag_key"]
            state = states.get(key) or empty_flag_state(key)
            if fields["version"] == state["version"] + 1:
                states[key] = fold_flag(state, fields)
            count += 1
    for state in states.values():
        flag_state(state)
    return count


async def rebuild_shadow(settings: StreamSettings, redis_url: str) -> int:
    """``projections.rebuild.ShadowRebuild.catch_up`` into a throw-away namespace (wiped after)."""
    from redis.asyncio import Redis

    from projections.keys import Keyspace
    from projections.rebuild import ShadowRebuild

    name = f"bench-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        async with ShadowRebuild(client, bootstrap_servers=settings.bootstrap_servers, topic=settings.topic,
                                 live=Keyspace(name), shadow=Keyspace(name + "-shadow"), batch=5000,
                                 idle=0.5) as rebuild:
            await rebuild.catch_up()
            await rebuild.wipe_shadow()
            return rebuild.report.events
    finally:
        await client.aclose()


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _timed(label: str, events: int, run: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    result = await run()
    elapsed = time.perf_counter() - started
    print(f"{label:<36} {elapsed:8.2f} s  {events / elapsed:>10,.0f} events/s  "
          f"peak RSS {_maxrss_mb():7.1f} MB", flush=True)
    return result


async def _fresh_database(url: str) -> AsyncIterator[str]:
    name = f"bench_replay_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(args: argparse.Namespace) -> None:
    topic = args.topic or f"bench.replay.{uuid.uuid4().hex[:8]}"
    settings = StreamSettings(args.bootstrap, topic, idle_ms=500)
    print(f"topic {topic}: {args.events:,} events over {args.flags:,} flags, {args.partitions} partitions")
    if not args.topic:
        await _timed("generate + produce", args.events,
                     lambda: produce_all(args.bootstrap, topic, args.partitions, args.events, args.flags))
    if args.redis_url:
        await _timed("rebuild (projections, shadow)", args.events,
                     partial(rebuild_shadow, settings, args.redis_url))
    await _timed("replay + fastfold (no Redis)", args.events, lambda: rebuild_by_fastfold(settings))
    if not args.skip_evolve:
        await _timed("replay + evolve (no Redis)", args.events, lambda: rebuild_by_evolve(settings))
    report = await _timed("verify (Kafka)", args.events, lambda: verify_log(settings))
    print(f"  -> ok={report.ok} streams={report.streams} discrepancies={report.discrepancies}")
    if args.workers > 1:
        report = await _timed(f"verify (Kafka, {args.workers} processes)", args.events,
                              lambda: verify_log(settings, workers=args.workers))
        print(f"  -> ok={report.ok} streams={report.streams} discrepancies={report.discrepancies}")
    if args.database_url:
        async for database in _fresh_database(args.database_url):
            await _timed("generate + copy to Postgres", args.events,
                         partial(copy_to_postgres, database, args.events, args.flags))
            report = await _timed(f"verify (Kafka + Postgres, {args.workers} proc.)", args.events,
                                  partial(verify_log, settings, database_url=database, workers=args.workers))
            print(f"  -> ok={report.ok} postgres_rows={report.postgres_rows} first={report.first}")
    instant = START + timedelta(milliseconds=args.events // 2)
    snapshot = await _timed("as-of production (full read)", args.events,
                            lambda: environment_as_of(settings, "production", instant))
    print(f"  -> {len(snapshot.flags):,} flags at {format_instant(instant)}")
    expected, events_read = _digest(snapshot), snapshot.events_read
    del snapshot  # keep only a digest, so each phase's peak memory is its own
    if args.workers > 1:
        parallel = await _timed(f"as-of production ({args.workers} processes)", args.events,
                                partial(environment_as_of, settings, "production", instant,
                                        workers=args.workers))
        print(f"  -> same answer as one process: {_digest(parallel) == expected}")
        del parallel
    bounded = await _timed("as-of production (grace 60 s)", args.events,
                           lambda: environment_as_of(settings, "production", instant,
                                                     publish_grace=timedelta(seconds=60)))
    print(f"  -> same answer as the full read: {_digest(bounded) == expected}, "
          f"{bounded.events_read:,} events read instead of {events_read:,}")


def _digest(snapshot: EnvironmentSnapshot) -> dict[str, tuple[int, str, str]]:
    return {k: (s.version, s.last_hash, hashlib.sha256(s.model_dump_json().encode()).hexdigest())
            for k, s in snapshot.flags.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="processes for the parallel verify")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--skip-evolve", action="store_true", help="leave out the replay through evolve")
    parser.add_argument("--topic", help="reuse a topic generated by an earlier run (same --events/--flags)")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("--bootstrap or KAFKA_BOOTSTRAP_SERVERS is required")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
