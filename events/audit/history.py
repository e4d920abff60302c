"""History of one flag, and a search across flags, with field-level diffs.

Two readers answer the same two questions with the same signatures (:class:`AuditLog`):

- :class:`KafkaAuditLog` reads the audit log itself (the topic). History of one flag reads only
  that flag's partition and stops as soon as a page is full; a search scans every partition and
  keeps only the best ``limit + 1`` entries (a heap), so memory is bounded by the page size.
- :class:`PostgresAuditLog` reads the ``events`` table, which holds the same canonical bodies
  (``verify`` proves the two agree). It answers with indexed queries, so **the API should serve
  history and search from Postgres** and keep the Kafka reader for auditors who want the answer
  from the log alone (CLI ``flagstream audit history``) and for cross-checks.

Pagination: history is in version order and its cursor is the last version returned (the next
page has versions above it); a search is ordered by ``(occurred_at, flag_key, version)`` and its
cursor is the opaque string of the last entry's position.

Environment filter: the events of that environment plus the flag-level ones (``environment``
is ``None``: created, metadata, archived, restored), which apply to every environment.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.diff import Change, diff
from core.envelope import Event, format_instant
from events.audit.stream import StreamSettings, partition_for_key, read_batches, topic_partitions

__all__ = [
    "AuditFilters",
    "AuditLog",
    "HistoryEntry",
    "HistoryPage",
    "KafkaAuditLog",
    "PostgresAuditLog",
    "diff_of",
    "entry_of",
]


class AuditFilters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    flag_key: str | None = None
    environment: str | None = None
    actor: str | None = None
    types: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def admits_fields(self, fields: dict[str, Any]) -> bool:
        """:meth:`admits` on a raw envelope (canonical instants compare as text)."""
        occurred: str = fields["occurred_at"]
        return (
            (self.flag_key is None or fields["flag_key"] == self.flag_key)
            and (self.environment is None or fields.get("environment") in (None, self.environment))
            and (self.actor is None or fields.get("actor") == self.actor)
            and (not self.types or fields.get("type") in self.types)
            and (self.since is None or occurred >= format_instant(self.since))
            and (self.until is None or occurred <= format_instant(self.until))
        )

    def admits(self, event: Event) -> bool:
        return (
            (self.flag_key is None or event.flag_key == self.flag_key)
            and (self.environment is None or event.environment in (None, self.environment))
            and (self.actor is None or event.actor == self.actor)
            and (not self.types or event.type in self.types)
            and (self.since is None or event.occurred_at >= self.since)
            and (self.until is None or event.occurred_at <= self.until)
        )


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: UUID
    flag_key: str
    version: int
    type: str
    environment: str | None
    occurred_at: datetime
    actor: str
    reason: str | None
    correlation_id: str | None
    causation_id: str | None
    diff: list[Change]
    hash: str
    prev_hash: str


class HistoryPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    entries: list[HistoryEntry] = Field(default_factory=list)
    next_cursor: str | None = None


def diff_of(event: Event) -> list[Change]:
    """The field-level changes an event made (carried by the event; derived for created/archived)."""
    carried = event.payload.get("diff")
    if isinstance(carried, list):
        return [Change.model_validate(c) for c in carried]
    match event.type:
        case "FlagCreated" | "SegmentCreated":
            created: JsonValue = event.payload.get("flag", event.payload.get("segment"))
            return diff({}, created)
        case "FlagArchived" | "SegmentArchived":
            return [Change(path="archived", before=False, after=True)]
        case "FlagRestored":
            return [Change(path="archived", before=True, after=False)]
    return []


def entry_of(event: Event) -> HistoryEntry:
    return HistoryEntry(
        event_id=event.event_id, flag_key=event.flag_key, version=event.version, type=event.type,
        environment=event.environment, occurred_at=event.occurred_at, actor=event.actor,
        reason=event.reason, correlation_id=event.correlation_id, causation_id=event.causation_id,
        diff=diff_of(event), hash=event.hash, prev_hash=event.prev_hash,
    )


class AuditLog(Protocol):
    async def history(self, flag_key: str, filters: AuditFilters, *, after_version: int | None = None,
                      limit: int = 100) -> HistoryPage: ...

    async def search(self, filters: AuditFilters, *, cursor: str | None = None,
                     limit: int = 100) -> HistoryPage: ...


def _search_position(event: Event) -> tuple[str, str, int]:
    return format_instant(event.occurred_at), event.flag_key, event.version


def _encode_cursor(position: tuple[str, str, int]) -> str:
    return f"{position[0]}|{position[2]}|{position[1]}"


def _decode_cursor(cursor: str) -> tuple[str, str, int]:
    instant, version, flag_key = cursor.split("|", 2)
    return instant, flag_key, int(version)


def _page(events: Sequence[Event], limit: int, *, by_position: bool = False) -> HistoryPage:
    """A page of at most ``limit`` entries; ``events`` holds one more when another page follows."""
    entries = [entry_of(e) for e in events[:limit]]
    if len(events) <= limit:
        return HistoryPage(entries=entries)
    last = events[limit - 1]
    cursor = _encode_cursor(_search_position(last)) if by_position else str(last.version)
    return HistoryPage(entries=entries, next_cursor=cursor)


class KafkaAuditLog:
    """History and search answered from the Kafka topic (the audit log itself)."""

    def __init__(self, settings: StreamSettings) -> None:
        self._settings = settings

    async def history(self, flag_key: str, filters: AuditFilters, *, after_version: int | None = None,
                      limit: int = 100) -> HistoryPage:
        known = await topic_partitions(self._settings)
        if not known:
            return HistoryPage()
        wanted, found, last_version = flag_key.encode("utf-8"), list[Event](), 0
        scope = filters.model_copy(update={"flag_key": flag_key})
        async for batch in read_batches(self._settings, partitions=[partition_for_key(flag_key, known)],
                                        since=filters.since):
            for record in batch:
                if record.key != wanted:
                    continue
                event = record.event()
                if event.version <= last_version:
                    continue  # a redelivery
                last_version = event.version
                if filters.until is not None and event.occurred_at > filters.until:
                    return _page(found, limit)
                if event.version > (after_version or 0) and scope.admits(event):
                    found.append(event)
                    if len(found) > limit:
                        return _page(found, limit)
        return _page(found, limit)

    async def search(self, filters: AuditFilters, *, cursor: str | None = None,
                     limit: int = 100) -> HistoryPage:
        after = _decode_cursor(cursor) if cursor else None
        seen: set[tuple[str, int]] = set()
        best: list[tuple[tuple[str, str, int], str]] = []  # sorted by position, at most limit + 1
        async for batch in read_batches(self._settings, since=filters.since):
            for record in batch:
                fields = orjson.loads(record.value)  # cheap pre-filter; the few kept are parsed fully
                position = (fields["occurred_at"], fields["flag_key"], fields["version"])
                if (after is not None and position <= after) or not filters.admits_fields(fields):
                    continue
                if (position[1], position[2]) in seen:
                    continue
                _keep_smallest(best, position, record.value.decode("utf-8"), limit + 1, seen)
        return _page([Event.from_json(raw) for _, raw in best], limit, by_position=True)


def _keep_smallest(best: list[tuple[tuple[str, str, int], str]], position: tuple[str, str, int], raw: str,
                   size: int, seen: set[tuple[str, int]]) -> None:
    """Keep the ``size`` smallest positions in ``best`` (kept sorted; size is a page, so small)."""
    if len(best) >= size and position >= best[-1][0]:
        return
    bisect.insort(best, (position, raw))
    seen.add((position[1], position[2]))
    if len(best) > size:
        dropped = best.pop()
        seen.discard((dropped[0][1], dropped[0][2]))


class PostgresAuditLog:
    """History and search answered from the Postgres ``events`` table (indexed; what the API uses)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def history(self, flag_key: str, filters: AuditFilters, *, after_version: int | None = None,
                      limit: int = 100) -> HistoryPage:
        scope = filters.model_copy(update={"flag_key": flag_key})
        where, args = _where(scope)
        args.append(after_version or 0)
        where.append(f"version > ${len(args)}")
        args.append(limit + 1)
        query = f"SELECT body FROM events WHERE {' AND '.join(where)} ORDER BY version LIMIT ${len(args)}"
        rows = await self._pool.fetch(query, *args)
        return _page([Event.from_json(r["body"]) for r in rows], limit)

    async def search(self, filters: AuditFilters, *, cursor: str | None = None,
                     limit: int = 100) -> HistoryPage:
        where, args = _where(filters)
        if cursor:
            instant, flag_key, version = _decode_cursor(cursor)
            args += [datetime.fromisoformat(instant.replace("Z", "+00:00")), flag_key, version]
            where.append(f"(occurred_at, flag_key COLLATE \"C\", version) > "
                         f"(${len(args) - 2}, ${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        query = (f"SELECT body FROM events WHERE {' AND '.join(where) or 'TRUE'} "
                 f"ORDER BY occurred_at, flag_key COLLATE \"C\", version LIMIT ${len(args)}")
        rows = await self._pool.fetch(query, *args)
        return _page([Event.from_json(r["body"]) for r in rows], limit, by_position=True)


def _where(filters: AuditFilters) -> tuple[list[str], list[object]]:
    where: list[str] = []
    args: list[object] = []

    def add(clause: str, value: object) -> None:
        args.append(value)
        where.append(clause.replace("?", f"${len(args)}"))

    if filters.flag_key is not None:
        add("flag_key = ?", filters.flag_key)
    if filters.environment is not None:
        add("(environment IS NULL OR environment = ?)", filters.environment)
    if filters.actor is not None:
        add("actor = ?", filters.actor)
    if filters.types:
        add("type = ANY(?::text[])", sorted(filters.types))
    if filters.since is not None:
        add("occurred_at >= ?", filters.since)
    if filters.until is not None:
        add("occurred_at <= ?", filters.until)
    return where, args
