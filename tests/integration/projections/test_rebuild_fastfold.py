"""The rebuild's fast fold (parsed JSON, bulk writes) builds the live projector's exact read model.

Every kind of event the fast path folds differently (environment changes, creation, metadata,
archive / restore, a skipped rollback, segments), streams that are not projected (``ops:``,
``incident:``) and redeliveries, checked byte for byte against
the live projector (Lua path) with the drift check; and the poison records (gap, unparseable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.envelope import Event
from core.model import Segment
from projections.connection import make_redis
from projections.errors import PoisonEvent
from projections.rebuild import ShadowRebuild
from tests.integration.projections.kafka_helpers import create_topic, publish
from tests.integration.projections.streams import StreamWriter, flag_doc, on_config
from tests.integration.projections.test_rebuild import _project_live

pytestmark = pytest.mark.integration


RULED = on_config(True, rules=[{"id": "r1", "serve": {"variation": "off"}}])


def _mixed_history() -> list[Event]:
    w = StreamWriter()
    events = [w.create(flag_doc(f"flag-{i}", "production", "staging")) for i in range(3)]
    events += [w.create_segment(Segment(key="beta", included=("u1",)))]
    for i in range(3):
        events.append(w.configure(f"flag-{i}", "production", on_config(i % 2 == 0)))
    events += [
        w.metadata("flag-0", name="Checkout", tags=["team-a"]),
        w.next("flag-1", "RollbackSkipped", {"environment": "production", "why": "cooldown"}, "production"),
        w.archive("flag-2"),
        w.configure("flag-0", "staging", RULED),
        w.update_segment(Segment(key="beta", name="Beta", included=("u2",))),
        w.next("flag-2", "FlagRestored", {}),
        w.configure("flag-1", "staging", on_config(True)),
        w.create_segment(Segment(key="gamma")),
        w.next("segment:gamma", "SegmentArchived", {}),
        w.metadata("flag-1", description="second"),
        w.next("ops:dead-letters", "DeadLetterPurged", {"note": "not projected"}),
        w.next("incident:i-1", "IncidentRecorded", {"note": "not projected"}),
    ]
    return events


@pytest.fixture
async def client(fresh_redis: str) -> AsyncIterator[Redis]:
    redis = make_redis(fresh_redis)
    yield redis
    await redis.aclose()


def _rebuild(client: Redis, bootstrap: str, topic: str) -> ShadowRebuild:
    return ShadowRebuild(client, bootstrap_servers=bootstrap, topic=topic, group="live", idle=0.3)


async def test_check__every_event_kind_and_redeliveries__zero_drift_with_live_projector(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    events = _mixed_history()
    await create_topic(kafka_bootstrap, unique_topic, partitions=2)
    await publish(kafka_bootstrap, unique_topic, events + events[3:9])  # a redelivered stretch
    flags_only = [e for e in events if ":" not in e.flag_key]
    await _project_live(client, kafka_bootstrap, unique_topic, flags_only)  # waits for the flags' states

    async with _rebuild(client, kafka_bootstrap, unique_topic) as rebuild:
        report = await rebuild.run(switch=False)

    assert report.drift == []
    assert (report.applied, report.duplicates, report.skipped) == (len(events) - 2, 6, 2)
    assert await client.hget("fs-shadow:segments", "beta") == await client.hget("fs:segments", "beta")


async def test_catch_up__version_gap__poison_gap_and_everything_before_written(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    w = StreamWriter()
    first, _lost = w.create(flag_doc("f", "production")), w.archive("f")
    third = w.next("f", "FlagRestored", {})
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await publish(kafka_bootstrap, unique_topic, [first, third])

    async with _rebuild(client, kafka_bootstrap, unique_topic) as rebuild:
        with pytest.raises(PoisonEvent) as caught:
            await rebuild.catch_up()

    assert (caught.value.kind, caught.value.stream_key, caught.value.version) == ("gap", "f", 3)
    assert caught.value.raw == third.to_json().encode()
    assert await client.get(f"fs-shadow:checkpoint:live:{unique_topic}:0") == "1"
    assert await client.hexists("fs-shadow:env:production:flags", "f")


async def test_catch_up__record_not_json__poison_unparseable(
    client: Redis, kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    await publish(kafka_bootstrap, unique_topic, [b"not json"])

    async with _rebuild(client, kafka_bootstrap, unique_topic) as rebuild:
        with pytest.raises(PoisonEvent) as caught:
            await rebuild.catch_up()

    assert (caught.value.kind, caught.value.offset) == ("unparseable", 0)
