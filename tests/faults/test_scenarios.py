"""Fault scenarios of issue 4 on a private stack: load from several clients, a fault, the checker.

Each test: create the flags, wait until a probe command flows end to end, start the load, break
something, heal it, measure the recovery, stop the load, then poll the checker (bounded) until
every invariant holds. Figures go to stdout and ``.runtime-data/fault-report.json``.
See ``docs/fault-tests.md``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from core.envelope import Event, EventDraft, seal
from events.store.db import create_pool
from events.store.postgres import PostgresEventStore
from projections.connection import make_redis
from projections.keys import Keyspace
from projections.reader import EnvironmentReader
from projections.readmodel import RedisReadModel
from runtime.devstack import Stack
from tests.faults.checker import wait_until_consistent
from tests.faults.harness import FaultPlatform, start_fault_platform
from tests.faults.load import LoadDriver, make_config
from tests.faults.report import PROBE_FLAG, REPORT_PATH, ScenarioReport, time_to_recover
from tests.faults.retries import publish_retry_duplicates

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

FLAGS = [f"fault-{i}" for i in range(6)]
WARMUP_S = 1.5  # load before the fault
AFTER_HEAL_S = 1.0  # load after the platform recovered
RECOVERY_BOUND_S = 30.0
CHECK_BOUND_S = 25.0  # a SIGKILLed projector holds its partitions until its session times out (10 s)
Fault = Callable[[FaultPlatform], Awaitable[float]]  # breaks, heals; returns when it was healed


@pytest.fixture
async def platform(private_stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[FaultPlatform]:
    logs = REPORT_PATH.parent / "fault-logs" / request.node.name  # kept after the run, unlike tmp_path
    async with start_fault_platform(private_stack, logs) as running:
        await running.create_flags([*FLAGS, PROBE_FLAG])
        if await time_to_recover(running, time.monotonic(), within=40) is None:
            pytest.fail(
                "the platform never flowed end to end before the fault:\n"
                + running.relay.log_tail()
                + "\n"
                + running.projector.log_tail()
            )
        yield running


async def _run(
    platform: FaultPlatform,
    scenario: str,
    fault: Fault,
    *,
    seed: int = 7,
    exclude: tuple[str, ...] = (),
    **notes: Any,
) -> ScenarioReport:
    driver = LoadDriver(platform.request, FLAGS, clients=4, seed=seed)
    driver.start()
    try:
        await asyncio.sleep(WARMUP_S)  # a steady stream for a while: part of the scenario, not a wait
        healed_at = await fault(platform)
        recovered_s = await time_to_recover(platform, healed_at, within=RECOVERY_BOUND_S)
        await asyncio.sleep(AFTER_HEAL_S)
    finally:
        await driver.stop()
    settings = platform.settings
    result, _ = await wait_until_consistent(
        driver.history,
        database_url=platform.stack.database_url,
        redis_url=platform.stack.redis_url,
        namespace=settings.redis_namespace,
        bootstrap=platform.stack.kafka_bootstrap,
        topic=settings.flag_events_topic,
        within=CHECK_BOUND_S if recovered_s is not None else 5.0,  # not recovered: fail soon
        exclude=exclude,
    )
    converged_s = time.monotonic() - healed_at if result.ok else None
    report = ScenarioReport.build(
        scenario, driver, result, platform, recovered_s=recovered_s, converged_s=converged_s, **notes
    )
    report.publish()
    return report


def _assert_sound(report: ScenarioReport, platform: FaultPlatform) -> None:
    logs = f"\nrelay:\n{platform.relay.log_tail()}\nprojector:\n{platform.projector.log_tail()}"
    assert report.acknowledged > 0, report
    assert report.lost == 0, report.violations
    assert report.duplicated == 0, report.violations
    assert report.unavailable_without_retry_after == 0, report
    assert report.recovered_s is not None, f"never recovered end to end{logs}"
    assert report.violations == [], f"{report.violations}{logs}"


@pytest.mark.timeout(150)
async def test_kafka_broker_lost__relay_republishes_from_postgres__nothing_lost(
    platform: FaultPlatform,
) -> None:
    """The log before the loss holds retry duplicates, a parked and a purged poison event: the
    republished log is shorter, so the projector's old checkpoints point past events it never
    saw (issue 9, §2.1). The log epoch makes it replay the new log from its beginning."""
    await platform.create_flags([PARKED, PURGED])
    client = make_redis(platform.stack.redis_url)
    keys = Keyspace(platform.settings.redis_namespace)
    seen: dict[str, Any] = {}

    async def fault(p: FaultPlatform) -> float:
        seen["parked"] = await _park_poison(p, PARKED)
        seen["purged"] = await _park_poison(p, PURGED)
        purged = await p.request(
            "DELETE", f"/api/v1/dead-letters/{seen['purged']}", role="ops", json={"reason": "fault test"}
        )
        assert purged.status_code == 200, purged.text
        topic = p.settings.flag_events_topic
        ends = await publish_retry_duplicates(p.stack.kafka_bootstrap, topic)
        seen["duplicates_up_to"] = ends

        async def projected_duplicates() -> bool:
            group = p.settings.projector_group
            stored = [await client.get(keys.checkpoint(group, topic, part)) for part in ends]
            return all(int(raw or 0) >= end for raw, end in zip(stored, ends.values(), strict=True))

        seen["duplicates_projected"] = await _poll_async(projected_duplicates, within=15)
        assert p.stack.kafka is not None
        await p.kill_server(p.stack.kafka)
        await asyncio.sleep(10.0)  # the outage itself (issue 4: 10 s)
        await p.start_server(p.stack.kafka)  # tansu keeps nothing: an empty broker
        return time.monotonic()

    try:
        report = await _run(platform, "kafka-broker-lost", fault, exclude=(PARKED, PURGED), log=seen)
    finally:
        await client.aclose()
    letters = {}
    for flag in (PARKED, PURGED):  # the replay of the new log went past both poison events again
        listed = await platform.request("GET", "/api/v1/dead-letters", role="ops", params={"flag": flag})
        letters[flag] = [item["id"] for item in listed.json()["items"]]
    blocked = (await platform.request("GET", "/api/v1/dead-letters/blocked-flags", role="ops")).json()

    assert seen["parked"] and seen["purged"], seen
    assert seen["duplicates_up_to"], "no retry duplicates were published before the loss"
    assert seen["duplicates_projected"], seen
    _assert_sound(report, platform)
    assert letters == {PARKED: [seen["parked"]], PURGED: []}, letters  # nothing parked twice or again
    assert PARKED in blocked["stages"]["projector"] and PURGED not in blocked["stages"]["projector"]


PARKED, PURGED = "fault-lost-parked", "fault-lost-purged"


async def _park_poison(platform: FaultPlatform, flag: str) -> str | None:
    """Append an event the projector cannot apply (FlagEnabled at schema 2); the id of its letter."""
    head = await _chain_head(platform, flag)
    config = make_config(31337, enabled=True)
    await _append_directly(platform, [_next_event(head, "FlagEnabled", {"config": config, "diff": []}, 2)])
    letter: dict[str, str | None] = {"id": None}

    async def parked() -> bool:
        response = await platform.request("GET", "/api/v1/dead-letters", role="ops", params={"flag": flag})
        assert response.status_code == 200, response.text
        items = [item for item in response.json()["items"] if item["version"] == head.version + 1]
        letter["id"] = items[0]["id"] if items else None
        return bool(items)

    await _poll_async(parked, within=20)
    return letter["id"]


async def test_redis_lost__read_model_rebuilt__readers_serve_stale_snapshot(platform: FaultPlatform) -> None:
    reader = EnvironmentReader(
        platform.stack.redis_url, "production", namespace=platform.settings.redis_namespace, poll_interval=0.2
    )
    await reader.start()
    seen: dict[str, Any] = {}

    async def fault(p: FaultPlatform) -> float:
        assert p.stack.redis is not None
        assert await reader.wait_for_version(PROBE_FLAG, 1, within=5)
        await p.kill_server(p.stack.redis)
        outage_end = time.monotonic() + 4.0
        while time.monotonic() < outage_end:  # the outage; the reader is watched meanwhile
            seen["unhealthy"] = seen.get("unhealthy", False) or not reader.healthy
            seen["staleness_s"] = reader.staleness_seconds
            seen["serves"] = reader.evaluate(PROBE_FLAG, {"key": "u"}, datetime.now(UTC)).version
            await asyncio.sleep(0.1)
        await p.start_server(p.stack.redis)  # an empty Redis
        return time.monotonic()

    try:
        report = await _run(platform, "redis-lost", fault, reader_during_outage=seen)
        healthy_again = await _poll(lambda: reader.healthy, within=10)
    finally:
        await reader.stop()

    _assert_sound(report, platform)
    assert seen["unhealthy"], "the reader never reported the outage"
    assert seen["staleness_s"] > 2.0, seen
    assert seen["serves"] is not None, "the reader stopped serving its last snapshot"
    assert healthy_again


async def test_postgres_restarted__503_with_retry_after__service_resumes(platform: FaultPlatform) -> None:
    async def fault(p: FaultPlatform) -> float:
        assert p.stack.postgres is not None
        await p.kill_server(p.stack.postgres)
        await asyncio.sleep(5.0)  # the outage
        await p.start_server(p.stack.postgres)
        return time.monotonic()

    report = await _run(platform, "postgres-restarted", fault)

    _assert_sound(report, platform)
    assert report.unavailable_503 > 0, "no command was refused while Postgres was down"
    assert report.failed_other == 0, report.failure_samples  # e.g. a 500 instead of a 503
    assert report.indeterminate == 0, report.failure_samples


async def test_workers_sigkilled_at_random__nothing_lost_or_applied_twice(platform: FaultPlatform) -> None:
    rng = random.Random(20261122)
    kills: list[str] = []

    async def fault(p: FaultPlatform) -> float:
        for _ in range(6):
            name = rng.choice(["relay", "projector"])
            worker = p.workers[name]
            await asyncio.sleep(rng.uniform(0.3, 2.0))  # a random point in the stream
            worker.kill()
            kills.append(name)
            await asyncio.sleep(rng.uniform(0.0, 0.5))  # down for a random while
            worker.start()
        return time.monotonic()

    report = await _run(platform, "workers-sigkilled", fault, kills=kills)

    _assert_sound(report, platform)
    assert sum(w.kills for w in platform.workers.values()) == 6


async def _poll(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


POISONED = "fault-poisoned"


async def _append_directly(platform: FaultPlatform, events: list[Event]) -> None:
    """Write events straight into the outbox, as a buggy or newer producer would (hash chain kept)."""
    pool = await create_pool(platform.stack.database_url, min_size=1, max_size=1)
    try:
        await PostgresEventStore(pool).append(events)
    finally:
        await pool.close()


async def _chain_head(platform: FaultPlatform, flag: str) -> Event:
    pool = await create_pool(platform.stack.database_url, min_size=1, max_size=1)
    try:
        return (await PostgresEventStore(pool).read_stream(flag))[-1]
    finally:
        await pool.close()


def _next_event(head: Event, event_type: str, payload: dict[str, Any], schema_version: int) -> Event:
    draft = EventDraft(
        type=event_type, schema_version=schema_version, environment="production", payload=payload
    )
    return seal(
        draft,
        event_id=uuid.uuid4(),
        flag_key=head.flag_key,
        version=head.version + 1,
        prev_hash=head.hash,
        occurred_at=datetime.now(UTC),
        actor="fault-test",
    )


async def _poll_async(condition: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return await condition()


async def test_poison_event__dead_lettered_flag_blocked_others_flow__purge_unblocks(
    platform: FaultPlatform,
) -> None:
    await platform.create_flags([POISONED])
    client = make_redis(platform.stack.redis_url)
    model = RedisReadModel(client, Keyspace(platform.settings.redis_namespace))
    seen: dict[str, Any] = {}
    held_config = make_config(424242, enabled=True)

    async def fault(p: FaultPlatform) -> float:
        head = await _chain_head(p, POISONED)
        seen["before"] = head.version
        # FlagEnabled at schema 2: valid envelope and chain, a payload this build cannot apply
        poison = _next_event(head, "FlagEnabled", {"config": held_config, "diff": []}, schema_version=2)
        held = _next_event(poison, "EnvironmentConfigured", {"config": held_config, "diff": []}, 1)
        await _append_directly(p, [poison, held])

        async def parked() -> bool:
            response = await p.request("GET", "/api/v1/dead-letters", role="ops", params={"flag": POISONED})
            assert response.status_code == 200, response.text
            letters = [item for item in response.json()["items"] if item["version"] == poison.version]
            seen["letter"] = letters[0]["id"] if letters else None
            return bool(letters)

        seen["parked"] = await _poll_async(parked, within=20)
        blocked = await p.request("GET", "/api/v1/dead-letters/blocked-flags", role="ops")
        seen["blocked"] = blocked.json().get("stages", {}) if blocked.status_code == 200 else blocked.text
        seen["others_flow_s"] = await time_to_recover(p, time.monotonic(), within=15)
        seen["redis_while_blocked"] = (await model.load_flag_state(POISONED)).version
        if seen["letter"] is not None:
            purged = await p.request(
                "DELETE",
                f"/api/v1/dead-letters/{seen['letter']}",
                role="ops",
                json={"reason": "fault test: poison dropped"},
            )
            seen["purge_status"] = purged.status_code
        return time.monotonic()

    try:
        report = await _run(platform, "poison-event", fault, exclude=(POISONED,), poison=seen)

        async def unblocked() -> bool:
            return (await model.load_flag_state(POISONED)).version >= int(seen["before"]) + 2

        flows_again = await _poll_async(unblocked, within=15)
        final = await model.load_flag_state(POISONED)
    finally:
        await client.aclose()

    _assert_sound(report, platform)
    assert seen["parked"], f"the poison event was never dead-lettered: {seen}"
    assert POISONED in seen["blocked"].get("projector", []), seen
    assert seen["redis_while_blocked"] == seen["before"], seen
    assert seen["others_flow_s"] is not None, "other flags stopped flowing behind the poison"
    assert seen["purge_status"] == 200, seen
    assert flows_again, f"the flag did not flow again after the purge: {seen}"
    assert final.flag is not None
    assert (
        final.flag.environments["production"].model_dump(mode="json", by_alias=True)["targets"]
        == held_config["targets"]
    )
