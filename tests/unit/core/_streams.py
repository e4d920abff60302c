"""Test helpers: run commands against a flag or segment stream the way the command service does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from core.commands import FlagCommand, SegmentCommand
from core.decide import decide, decide_segment
from core.envelope import Event, EventDraft, seal
from core.evolve import evolve, evolve_segment
from core.state import Catalog, FlagState, SegmentState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seal_next(
    draft: EventDraft, stream: str, version: int, prev_hash: str, *, reason: str | None = None
) -> Event:
    return seal(
        draft,
        event_id=UUID(int=version),
        flag_key=stream,
        version=version,
        prev_hash=prev_hash,
        occurred_at=T0 + timedelta(seconds=version),
        actor="tester",
        reason=reason,
    )


@dataclass
class FlagStream:
    key: str
    catalog: Catalog = field(default_factory=Catalog)
    state: FlagState = field(init=False)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = FlagState(key=self.key)

    def run(self, command: FlagCommand) -> list[Event]:
        drafts = decide(self.state, command, self.catalog)
        sealed = []
        for draft in drafts:
            event = seal_next(
                draft, self.key, self.state.version + 1, self.state.last_hash, reason=command.reason
            )
            self.state = evolve(self.state, event)
            sealed.append(event)
        self.events += sealed
        return sealed


@dataclass
class SegmentStream:
    key: str
    catalog: Catalog = field(default_factory=Catalog)
    state: SegmentState = field(init=False)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = SegmentState(key=self.key)

    def run(self, command: SegmentCommand) -> list[Event]:
        drafts = decide_segment(self.state, command, self.catalog)
        sealed = []
        for draft in drafts:
            event = seal_next(draft, self.state.stream, self.state.version + 1, self.state.last_hash)
            self.state = evolve_segment(self.state, event)
            sealed.append(event)
        self.events += sealed
        return sealed
