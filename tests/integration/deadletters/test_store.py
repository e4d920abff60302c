from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from importlib import resources

import asyncpg
import pytest

from core.errors import UnknownEventType
from events.deadletters import (
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterResolved,
    DeadLetterStats,
    DeadLetterStore,
    KafkaCoordinates,
    NewDeadLetter,
    export_dead_letter_metrics,
)
from events.errors import StoreUnavailable
from monitoring.metrics import REGISTRY
from tests.integration.deadletters._letters import NOW, a_letter, an_event
from tests.integration.deadletters.conftest import dead_letters_migration

pytestmark = pytest.mark.integration


async def test_migration__applied_twice__idempotent(pool: asyncpg.Pool) -> None:
    await pool.execute(dead_letters_migration())
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'dead_letters'"
        )
    }
    assert {
        "stage",
        "flag_key",
        "version",
        "event_id",
        "event_body",
        "raw_record",
        "error_class",
        "error_message",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "status",
        "resolved_at",
        "resolved_by",
        "resolve_reason",
    } <= columns


async def test_migration__runner_applies_files_in_order__dead_letters_created(fresh_database: str) -> None:
    db = pytest.importorskip("events.store.db")
    assert 10 in [m.version for m in db.load_migrations()]
    applied = await db.apply_migrations(fresh_database)
    assert 10 in applied and applied == sorted(applied)
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('dead_letters') IS NOT NULL")
    finally:
        await conn.close()


async def test_park__event__stored_with_everything_needed_to_redrive(store: DeadLetterStore) -> None:
    event = an_event("checkout", 3)
    kafka = KafkaCoordinates("flagstream.flag-events", 2, 41)
    letter = await store.park(
        NewDeadLetter.for_event(
            "projector", event, UnknownEventType("FlagTeleported"), kafka=kafka, attempts=2
        )
    )
    fetched = await store.get(letter.id)
    assert fetched == letter
    assert (fetched.stage, fetched.flag_key, fetched.version, fetched.event_id) == (
        "projector",
        "checkout",
        3,
        event.event_id,
    )
    assert fetched.event_body == event.to_json()
    assert (fetched.error_class, fetched.error_message) == ("UnknownEventType", "FlagTeleported")
    assert fetched.attempts == 2
    assert fetched.kafka == kafka
    assert fetched.status == "parked"
    assert fetched.first_failed_at == fetched.last_failed_at
    assert fetched.resolved_at is None


async def test_park__same_event_same_stage_again__one_letter_more_attempts(store: DeadLetterStore) -> None:
    letter = a_letter(failed_at=NOW)
    first = await store.park(letter)
    later = dataclasses.replace(
        letter, failed_at=NOW + timedelta(minutes=5), error_message="still cannot apply", attempts=3
    )
    again = await store.park(later)
    assert again.id == first.id
    assert again.attempts == 4
    assert again.first_failed_at == NOW
    assert again.last_failed_at == NOW + timedelta(minutes=5)
    assert again.error_message == "still cannot apply"
    assert (await store.list()).items == [again]


async def test_park__other_event_same_flag_and_stage__separate_letter(store: DeadLetterStore) -> None:
    await store.park(a_letter("projector", "checkout", 3))
    await store.park(a_letter("projector", "checkout", 4))
    assert [lt.version for lt in (await store.list()).items] == [3, 4]


async def test_park__same_event_other_stage__separate_letters(store: DeadLetterStore) -> None:
    letter = a_letter("relay")
    await store.park(letter)
    await store.park(dataclasses.replace(letter, stage="projector"))
    assert len((await store.list()).items) == 2


async def test_park__concurrently_ten_times__one_letter_ten_attempts(store: DeadLetterStore) -> None:
    letter = a_letter()
    await asyncio.gather(*(store.park(letter) for _ in range(10)))
    page = await store.list()
    assert [lt.attempts for lt in page.items] == [10]


async def test_park__after_redrive_fails_again__new_letter_old_one_kept(store: DeadLetterStore) -> None:
    letter = a_letter()
    first = await store.park(letter)
    await store.mark_redriven(first.id, by="ops-bob")
    second = await store.park(letter)
    assert second.id != first.id
    assert (await store.get(first.id)).status == "redriven"
    assert await store.blocked_flags("projector") == {"checkout"}


async def test_park__raw_record__bytes_kept_and_deduplicated_by_coordinates(store: DeadLetterStore) -> None:
    raw = b"\xff\x00not json"
    kafka = KafkaCoordinates("flagstream.flag-events", 0, 7)
    record = NewDeadLetter.for_record(
        "projector", raw, ValueError("not an event"), flag_key="checkout", kafka=kafka
    )
    first = await store.park(record)
    again = await store.park(record)
    assert again.id == first.id and again.attempts == 2
    assert again.raw_record == raw and again.event_body is None and again.event_id is None


async def test_list__filters__each_narrows(store: DeadLetterStore) -> None:
    old = await store.park(a_letter("relay", "a", failed_at=NOW - timedelta(days=400)))
    await store.park(a_letter("projector", "a", error=ValueError("x")))
    await store.park(a_letter("projector", "b"))
    resolved = await store.park(a_letter("rollback", "c"))
    await store.mark_purged(resolved.id, by="ops", reason="obsolete")

    async def keys(flt: DeadLetterFilter) -> list[tuple[str, str | None, str]]:
        return [(lt.stage, lt.flag_key, lt.error_class) for lt in (await store.list(flt)).items]

    assert len(await keys(DeadLetterFilter())) == 3
    assert await keys(DeadLetterFilter(stage="projector")) == [
        ("projector", "a", "ValueError"),
        ("projector", "b", "MalformedEvent"),
    ]
    assert await keys(DeadLetterFilter(error_class="ValueError")) == [("projector", "a", "ValueError")]
    assert [s for s, _, _ in await keys(DeadLetterFilter(flag_key="a"))] == ["relay", "projector"]
    assert [lt.id for lt in (await store.list(DeadLetterFilter(min_age=timedelta(days=1)))).items] == [old.id]
    assert await keys(DeadLetterFilter(status="purged")) == [("rollback", "c", "MalformedEvent")]
    assert len(await keys(DeadLetterFilter(status=None))) == 4


async def test_list__paginated_by_cursor__every_letter_once_in_order(store: DeadLetterStore) -> None:
    parked = [await store.park(a_letter(flag_key=f"flag-{i}")) for i in range(7)]
    seen: list[int] = []
    cursor: int | None = None
    pages = 0
    while True:
        page = await store.list(after_id=cursor, limit=3)
        pages += 1
        seen += [lt.id for lt in page.items]
        if page.next_after_id is None:
            break
        cursor = page.next_after_id
    assert seen == [lt.id for lt in parked]
    assert pages == 3
    with pytest.raises(ValueError):
        await store.list(limit=0)


async def test_mark_redriven__parked__resolved_once(store: DeadLetterStore) -> None:
    letter = await store.park(a_letter())
    redriven = await store.mark_redriven(letter.id, by="ops-bob", reason="projector fixed in 1.4.2")
    assert (redriven.status, redriven.resolved_by, redriven.resolve_reason) == (
        "redriven",
        "ops-bob",
        "projector fixed in 1.4.2",
    )
    assert redriven.resolved_at is not None
    with pytest.raises(DeadLetterResolved):
        await store.mark_redriven(letter.id, by="ops-bob")
    with pytest.raises(DeadLetterResolved):
        await store.mark_purged(letter.id, by="ops-bob", reason="too late")
    with pytest.raises(DeadLetterNotFound):
        await store.mark_redriven(letter.id + 1000, by="ops-bob")


async def test_mark_purged__needs_a_reason__recorded(store: DeadLetterStore) -> None:
    letter = await store.park(a_letter())
    with pytest.raises(ValueError):
        await store.mark_purged(letter.id, by="admin", reason="  ")
    purged = await store.mark_purged(letter.id, by="admin", reason="poison from a retired producer")
    assert (purged.status, purged.resolve_reason) == ("purged", "poison from a retired producer")


async def test_blocked_flags__until_resolved_and_reprocessed__per_stage(store: DeadLetterStore) -> None:
    blocker = await store.park(a_letter("projector", "checkout", 3))
    other = await store.park(a_letter("projector", "pricing", 1))
    await store.park(a_letter("relay", "search", 1))
    assert await store.blocked_flags("projector") == {"checkout", "pricing"}
    assert await store.blocked_flags("relay") == {"search"}
    assert await store.blocked_flags("rollback") == set()
    await store.mark_redriven(blocker.id, by="ops")
    assert await store.blocked_flags("projector") == {"checkout", "pricing"}  # redriven, not yet redone
    await store.mark_reprocessed(blocker.id)
    await store.mark_purged(other.id, by="ops", reason="superseded")
    assert await store.blocked_flags("projector") == set()
    assert await store.blocked_flags("relay") == {"search"}


async def test_mark_redriven_matching__only_parked_matches_oldest_first(store: DeadLetterStore) -> None:
    a1 = await store.park(a_letter("projector", "a", 1))
    await store.park(a_letter("projector", "b", 1, error=ValueError("other class")))
    a2 = await store.park(a_letter("projector", "a", 2))
    await store.park(a_letter("relay", "a", 1))
    done = await store.mark_redriven_matching(
        DeadLetterFilter(stage="projector", error_class="MalformedEvent", status=None), by="ops"
    )
    assert [lt.id for lt in done] == [a1.id, a2.id]
    assert all(lt.status == "redriven" and lt.resolved_by == "ops" for lt in done)
    still_parked = (await store.list()).items
    assert [(lt.stage, lt.flag_key) for lt in still_parked] == [("projector", "b"), ("relay", "a")]
    assert (
        await store.mark_redriven_matching(DeadLetterFilter(stage="projector", flag_key="a"), by="ops") == []
    )


async def test_stats__counts_by_stage_and_class_oldest_age_blocked(store: DeadLetterStore) -> None:
    await store.park(a_letter("projector", "a", failed_at=NOW - timedelta(hours=1)))
    await store.park(a_letter("projector", "b", error=ValueError("x")))
    await store.park(a_letter("projector", "b", 2, error=ValueError("y")))
    await store.park(a_letter("relay", "c"))
    purged = await store.park(a_letter("rollback", "d"))
    await store.mark_purged(purged.id, by="ops", reason="r")
    stats = await store.stats()
    assert stats.counts == {
        "projector": {"MalformedEvent": 1, "ValueError": 2},
        "relay": {"MalformedEvent": 1},
    }
    assert stats.blocked_flags == {"projector": 2, "relay": 1}
    assert stats.oldest_age_seconds["projector"] >= 3600
    assert 0 <= stats.oldest_age_seconds["relay"] < 3600


async def test_store__postgres_unreachable__store_unavailable() -> None:
    pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1)
    assert pool is not None
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await DeadLetterStore(pool).park(a_letter())
        assert raised.value.retriable
    finally:
        await pool.close()


def test_migration__shipped_as_package_data() -> None:
    assert resources.files("events").joinpath("migrations/0010_dead_letters.sql").is_file()


async def test_export_dead_letter_metrics__stats__gauges_per_stage(store: DeadLetterStore) -> None:
    await store.park(a_letter("projector", "a", failed_at=NOW - timedelta(hours=2)))
    await store.park(a_letter("projector", "b"))
    export_dead_letter_metrics(await store.stats())
    assert (
        REGISTRY.get_sample_value(
            "flagstream_dead_letters", {"stage": "projector", "error_class": "MalformedEvent"}
        )
        == 2
    )
    assert REGISTRY.get_sample_value("flagstream_blocked_flags", {"stage": "projector"}) == 2
    assert REGISTRY.get_sample_value("flagstream_blocked_flags", {"stage": "relay"}) == 0
    age = REGISTRY.get_sample_value("flagstream_dead_letter_oldest_age_seconds", {"stage": "projector"})
    assert age is not None and age >= 7200
    export_dead_letter_metrics(DeadLetterStats())
    assert (
        REGISTRY.get_sample_value(
            "flagstream_dead_letters", {"stage": "projector", "error_class": "MalformedEvent"}
        )
        == 0
    )
