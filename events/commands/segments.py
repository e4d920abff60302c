"""Segments: create, replace, archive (through the command path) and read (from the event store).

Reads replay the segment streams from Postgres, so a segment is readable as soon as its command
answered (the Redis read model may lag by a projection). Writes go through the caller's
``execute`` (the API container's, which also records metrics) like every other command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from core.commands import ArchiveSegment, Command, CreateSegment, UpdateSegment
from core.envelope import SEGMENT_STREAM_PREFIX, Event
from core.errors import SegmentNotFound
from core.evolve import replay_segment
from core.model import Segment
from core.state import SegmentState
from events.commands.service import CommandMeta, CommandOutcome

__all__ = ["SegmentReads", "SegmentService"]

Execute = Callable[[Command, CommandMeta], Awaitable[CommandOutcome]]


class SegmentReads(Protocol):
    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]: ...

    async def stream_keys(self) -> list[str]: ...


class SegmentService:
    def __init__(self, store: SegmentReads, execute: Execute) -> None:
        self._store = store
        self._execute = execute

    async def create(self, segment: Segment, meta: CommandMeta, *, reason: str | None) -> CommandOutcome:
        return await self._execute(
            CreateSegment(segment_key=segment.key, segment=segment, reason=reason, expected_version=0), meta
        )

    async def update(
        self,
        key: str,
        segment: Segment,
        meta: CommandMeta,
        *,
        reason: str | None,
        expected_version: int | None,
    ) -> CommandOutcome:
        return await self._execute(
            UpdateSegment(segment_key=key, segment=segment, reason=reason, expected_version=expected_version),
            meta,
        )

    async def archive(
        self, key: str, meta: CommandMeta, *, reason: str | None, expected_version: int | None
    ) -> CommandOutcome:
        return await self._execute(
            ArchiveSegment(segment_key=key, reason=reason, expected_version=expected_version), meta
        )

    async def get(self, key: str) -> SegmentState:
        """The segment's current state; ``SegmentNotFound`` (404) if it never existed."""
        state = replay_segment(await self._store.read_stream(SEGMENT_STREAM_PREFIX + key), key=key)
        if state.segment is None:
            raise SegmentNotFound(f"segment {key!r} does not exist")
        return state

    async def list(self, *, include_archived: bool = False) -> list[SegmentState]:
        """Every segment, sorted by key (archived ones only when asked)."""
        states: list[SegmentState] = []
        for stream in sorted(await self._store.stream_keys()):
            if not stream.startswith(SEGMENT_STREAM_PREFIX):
                continue
            key = stream.removeprefix(SEGMENT_STREAM_PREFIX)
            state = replay_segment(await self._store.read_stream(stream), key=key)
            if state.segment is not None and (include_archived or not state.segment.archived):
                states.append(state)
        return states

    async def live_segments(self) -> dict[str, Segment]:
        """Every live segment by key (what evaluation and validation need)."""
        return {s.key: s.segment for s in await self.list() if s.segment is not None}
