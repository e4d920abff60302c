"""The command path: load a stream, decide, seal, append — one transaction, nothing half-written.

``CommandService.execute`` is what every producer (the HTTP API, the rollback worker, the CLI)
calls. It never reads the clock or makes ids itself: both are injected.

Concurrency: the store's unique ``(flag_key, version)`` makes two concurrent appends of the same
version impossible. When the caller pinned ``expected_version`` a lost race is a ``409``; when it
did not, the command is decided again on the fresh state (bounded), as a person re-clicking would.

Idempotency: with a key, the same key and request body within 24 h returns the first response and
writes nothing; the same key with another body is ``422 idempotency_key_reused``. The idempotency
record is written in the same transaction as the events, so a response is remembered iff its
events exist; a command that changes nothing keeps its answer under its key too. Two requests
with one key in flight at once both get the first answer: in one process the key is looked up
under the stream's lock (the second waits for the first), across processes a conflict or domain
error (``FlagExists``, ``VersionConflict``...) looks the key up again before it is raised — the
winner's events and answer commit in one transaction, so whoever sees its events sees its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import structlog

from core.commands import (
    ArchiveSegment,
    Command,
    FlagCommand,
    RollBackEnvironment,
    SegmentCommand,
)
from core.conditions import iter_clauses
from core.decide import decide, decide_segment
from core.envelope import SEGMENT_STREAM_PREFIX, Event, EventDraft, seal
from core.errors import DomainError, InvalidCommand, VersionConflict
from core.events import AlertInfo
from core.evolve import config_at, environment_changes_after, evolve, replay, replay_segment
from core.model import EnvironmentConfig, Flag, Operator, Rule, Segment
from core.state import Catalog, FlagState, SegmentState
from events.errors import DuplicateIdempotencyKey
from events.store.idempotency import IdempotencyRecord, IdempotencyWrite, replay_response

__all__ = ["CommandMeta", "CommandOutcome", "CommandService", "CommandStore", "default_response"]

log = structlog.get_logger("events.commands.service")

_MAX_DECIDE_ATTEMPTS = 25
_MAX_CATALOG_FLAGS = 500


class CommandStore(Protocol):
    """What the command path needs of the event store (Postgres in production)."""

    async def read_stream(self, stream_key: str, *, to_version: int | None = None) -> list[Event]: ...

    async def append(
        self, events: Sequence[Event], *, idempotency: IdempotencyWrite | None = None
    ) -> None: ...

    async def find_idempotency(self, principal: str, key: str) -> IdempotencyRecord | None: ...

    async def remember_answer(self, idempotency: IdempotencyWrite) -> None:
        """Keep the answer of a command that wrote nothing; ``DuplicateIdempotencyKey`` if taken."""
        ...

    async def stream_keys(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class CommandMeta:
    """Everything about a command that is not the decision: who, why, and how it is correlated."""

    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    stream: str
    version: int
    events: tuple[Event, ...] = ()
    replayed: bool = False
    response: dict[str, Any] = field(default_factory=dict)
    status: int = 200

    @property
    def event_ids(self) -> list[str]:
        return [str(e.event_id) for e in self.events]


def default_response(stream: str, version: int, events: Sequence[Event]) -> tuple[int, dict[str, Any]]:
    created = any(e.version == 1 for e in events)
    body: dict[str, Any] = {
        "key": stream.removeprefix(SEGMENT_STREAM_PREFIX),
        "version": version,
        "event_id": str(events[-1].event_id) if events else None,
        "event_ids": [str(e.event_id) for e in events],
        "events": [{"type": e.type, "version": e.version} for e in events],
        "changed": bool(events),
    }
    return (201 if created else 200), body


class CommandService:
    def __init__(
        self,
        store: CommandStore,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], UUID],
        cache_size: int = 10_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._locks: dict[str, list[Any]] = {}
        self._states: OrderedDict[str, FlagState] = OrderedDict()
        self._cache_size = cache_size

    async def execute(self, command: Command, meta: CommandMeta) -> CommandOutcome:
        async with self._stream_lock(_stream_of(command)):
            # Under the lock: a request with the same key that was in flight here has answered by now.
            previous = await self._answer_of(meta)
            if previous is not None:
                return previous
            try:
                return await self._execute_with_retries(command, meta)
            except DomainError:
                # Another process may have answered this key between our look-up and our decision
                # (its events and its answer commit together): that answer wins over our conflict.
                previous = await self._answer_of(meta)
                if previous is not None:
                    log.info("command.idempotent_race_answered", key=meta.idempotency_key)
                    return previous
                raise

    async def _answer_of(self, meta: CommandMeta) -> CommandOutcome | None:
        """The remembered answer to ``meta``'s idempotency key (``422`` for another body), if any."""
        if not meta.idempotency_key:
            return None
        previous = await self._store.find_idempotency(meta.actor, meta.idempotency_key)
        return None if previous is None else self._replay_response(previous, meta)

    async def _execute_with_retries(self, command: Command, meta: CommandMeta) -> CommandOutcome:
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._decide_and_append(command, meta)
            except VersionConflict:
                self._states.pop(_stream_of(command), None)  # whatever we held is behind the store
                if command.expected_version is not None or attempts >= _MAX_DECIDE_ATTEMPTS:
                    raise
                log.info("command.retry_after_conflict", attempt=attempts, command=type(command).__name__)
                await asyncio.sleep(random.uniform(0, 0.002 * attempts))  # jitter between competing processes
            except DuplicateIdempotencyKey:
                previous = await self._store.find_idempotency(meta.actor, meta.idempotency_key or "")
                if previous is None:
                    raise
                return self._replay_response(previous, meta)

    @contextlib.asynccontextmanager
    async def _stream_lock(self, stream: str) -> AsyncIterator[None]:
        """Commands on one stream run one at a time in this process: racing writers here would only
        conflict and retry. Across processes the store's unique (flag_key, version) still decides."""
        entry = self._locks.get(stream)
        if entry is None:
            entry = self._locks[stream] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(stream, None)

    async def load_flag(self, key: str, *, to_version: int | None = None) -> FlagState:
        return replay(await self._store.read_stream(key, to_version=to_version), key=key)

    def _remember(self, state: FlagState) -> None:
        if state.version == 0:
            return
        self._states[state.key] = state
        self._states.move_to_end(state.key)
        while len(self._states) > self._cache_size:
            self._states.popitem(last=False)

    async def load_segment(self, key: str) -> SegmentState:
        return replay_segment(await self._store.read_stream(SEGMENT_STREAM_PREFIX + key), key=key)

    async def rollback_command(
        self,
        key: str,
        environment: str,
        to_version: int,
        *,
        reason: str | None,
        expected_version: int | None,
        alert: AlertInfo | None = None,
    ) -> RollBackEnvironment:
        """The compensating command that puts back ``environment`` as it was right after ``to_version``.

        ``undone_versions`` are the later versions that changed that environment.
        """
        events = await self._store.read_stream(key)
        if to_version > len(events):
            raise InvalidCommand(
                f"flag {key!r} has no version {to_version}",
                details=[{"path": "to_version", "message": f"latest is {len(events)}"}],
            )
        return RollBackEnvironment(
            flag_key=key,
            environment=environment,
            to_version=to_version,
            restored_config=config_at(events, to_version, environment),
            undone_versions=environment_changes_after(events, to_version, environment),
            alert=alert,
            reason=reason,
            expected_version=expected_version,
        )

    def _replay_response(self, record: IdempotencyRecord, meta: CommandMeta) -> CommandOutcome:
        status, response = replay_response(record, meta.request_hash or record.request_hash)
        body = dict(response) if isinstance(response, dict) else {"response": response}
        version = body.get("version", 0)
        return CommandOutcome(
            stream=str(body.get("key", "")),
            version=version if isinstance(version, int) else 0,
            replayed=True,
            response=body,
            status=status,
        )

    async def _decide_and_append(self, command: Command, meta: CommandMeta) -> CommandOutcome:
        stream, drafts, last_version, last_hash, state_before = await self._decide(command)
        events = self._seal_all(
            drafts, stream=stream, version=last_version, prev_hash=last_hash, command=command, meta=meta
        )
        version = events[-1].version if events else last_version
        status, body = default_response(stream, version, events)
        idempotency = None
        if meta.idempotency_key and meta.request_hash:
            idempotency = IdempotencyWrite(
                principal=meta.actor,
                key=meta.idempotency_key,
                request_hash=meta.request_hash,
                status=status,
                response=body,
            )
        if not events and idempotency is not None:
            await self._store.remember_answer(idempotency)  # a no-op is an answer too: the key keeps it
        if events:
            await self._store.append(events, idempotency=idempotency)
            if state_before is not None:
                after = state_before
                for event in events:
                    after = evolve(after, event)
                self._remember(after)
            log.debug(
                "command.accepted",
                stream=stream,
                version=version,
                events=len(events),
                command=type(command).__name__,
            )
        return CommandOutcome(
            stream=stream, version=version, events=tuple(events), response=body, status=status
        )

    async def _decide(self, command: Command) -> tuple[str, list[EventDraft], int, str, FlagState | None]:
        if isinstance(command, SegmentCommand):
            segment_state = await self.load_segment(command.segment_key)
            catalog = await self._segment_catalog(command, segment_state)
            drafts = decide_segment(segment_state, command, catalog)
            return segment_state.stream, drafts, segment_state.version, segment_state.last_hash, None
        assert isinstance(command, FlagCommand)
        cached = self._states.get(command.flag_key)
        if cached is not None:
            self._states.move_to_end(command.flag_key)
            # A cached state may be behind the store (another process wrote since). A decision on it that
            # conflicts or changes nothing is not trusted: decide again on a fresh load. (One that does
            # change something is checked by the append's unique (flag_key, version).)
            try:
                drafts = decide(cached, command, await self._flag_catalog(command, cached))
            except VersionConflict:
                drafts = []
            if drafts:
                return cached.key, drafts, cached.version, cached.last_hash, cached
            self._states.pop(command.flag_key, None)
        state = await self.load_flag(command.flag_key)
        drafts = decide(state, command, await self._flag_catalog(command, state))
        self._remember(state)
        return state.key, drafts, state.version, state.last_hash, state

    def _seal_all(
        self,
        drafts: Iterable[EventDraft],
        *,
        stream: str,
        version: int,
        prev_hash: str,
        command: Command,
        meta: CommandMeta,
    ) -> list[Event]:
        now = self._clock()
        events: list[Event] = []
        for draft in drafts:
            version += 1
            event = seal(
                draft,
                event_id=self._new_id(),
                flag_key=stream,
                version=version,
                prev_hash=prev_hash,
                occurred_at=now,
                actor=meta.actor,
                reason=command.reason,
                correlation_id=meta.correlation_id,
                causation_id=meta.causation_id,
            )
            prev_hash = event.hash
            events.append(event)
        return events

    # --- the catalog: only what validation of this command needs --------------------------------

    async def _flag_catalog(self, command: FlagCommand, state: FlagState) -> Catalog:
        segments, prerequisites = _references(command, state.flag)
        return await self._catalog(segments, prerequisites, exclude=command.flag_key)

    async def _segment_catalog(self, command: SegmentCommand, state: SegmentState) -> Catalog:
        """Every live segment (segments reference segments; cycles and users are checked), and for an
        archive also every flag, to refuse archiving a segment still in use."""
        keys = await self._store.stream_keys()
        segments: list[Segment] = []
        flags: list[Flag] = []
        for key in keys:
            if key.startswith(SEGMENT_STREAM_PREFIX):
                segment = (await self.load_segment(key.removeprefix(SEGMENT_STREAM_PREFIX))).segment
                if segment is not None:
                    segments.append(segment)
            elif isinstance(command, ArchiveSegment) and ":" not in key:
                flag = (await self.load_flag(key)).flag
                if flag is not None:
                    flags.append(flag)
        return Catalog.build(flags, segments)

    async def _catalog(self, segments: set[str], prerequisites: set[str], *, exclude: str) -> Catalog:
        live_segments: set[str] = set()
        for key in segments:
            segment = (await self.load_segment(key)).segment
            if segment is not None and not segment.archived:
                live_segments.add(key)
        variations: dict[str, frozenset[str]] = {}
        graph: dict[str, dict[str, frozenset[str]]] = {}
        frontier = set(prerequisites) - {exclude}
        seen: set[str] = set()
        while frontier and len(seen) < _MAX_CATALOG_FLAGS:
            key = frontier.pop()
            seen.add(key)
            flag = (await self.load_flag(key)).flag
            if flag is None or flag.archived:
                continue
            variations[key] = frozenset(v.key for v in flag.variations)
            for env, config in flag.environments.items():
                needs = frozenset(p.flag for p in config.prerequisites)
                graph.setdefault(env, {})[key] = needs
                frontier |= needs - seen - {exclude}
        return Catalog(
            segment_keys=frozenset(live_segments),
            flag_variations=variations,
            prerequisites={env: dict(flags) for env, flags in graph.items()},
        )


def _stream_of(command: Command) -> str:
    if isinstance(command, SegmentCommand):
        return SEGMENT_STREAM_PREFIX + command.segment_key
    assert isinstance(command, FlagCommand)
    return command.flag_key


def _references(command: FlagCommand, current: Flag | None) -> tuple[set[str], set[str]]:
    """Segment keys and prerequisite flag keys named by the flag now or by the command."""
    segments: set[str] = set()
    flags: set[str] = set()
    configs: list[EnvironmentConfig] = []
    rules: list[Rule] = []
    if current is not None:
        configs.extend(current.environments.values())
    for value in command.__dict__.values():
        if isinstance(value, Flag):
            configs.extend(value.environments.values())
        elif isinstance(value, EnvironmentConfig):
            configs.append(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], Rule):
            rules.extend(value)
    if isinstance(command, RollBackEnvironment) and command.restored_config is not None:
        configs.append(command.restored_config)
    for config in configs:
        rules.extend(config.rules)
        flags.update(p.flag for p in config.prerequisites)
    for rule in rules:
        for _, clause in iter_clauses(rule.when):
            if clause.op is Operator.IN_SEGMENT:
                segments.update(str(v) for v in clause.values)
    return segments, flags
