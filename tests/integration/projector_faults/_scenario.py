"""Test helpers: a hash-chained stream writer that can seal any schema version, and a projector
wired with the dead-letter hooks (no I/O at import)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from core.model import EnvironmentConfig, Flag
from events.deadletters import DeadLetterStore
from events.resilience import AsyncCircuitBreaker
from projections.deadletters import ProjectorDeadLetters
from projections.projector import Projector
from projections.resilience import ResilientReadModel, make_projector_breaker
from tests.integration.projections.streams import flag_doc, on_config

__all__ = ["RULE", "Chain", "Poisoned", "Wired", "wire_projector"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Chain:
    """Seals the next event of any stream, keeping versions and the hash chain."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[int, str]] = {}
        self._clock = 0

    def next(
        self,
        stream: str,
        event_type: str,
        payload: dict[str, Any],
        environment: str | None = None,
        schema_version: int = 1,
    ) -> Event:
        version, prev = self._heads.get(stream, (0, GENESIS_HASH))
        self._clock += 1
        draft = EventDraft(
            type=event_type, schema_version=schema_version, environment=environment, payload=payload
        )
        event = seal(
            draft,
            event_id=uuid.uuid4(),
            flag_key=stream,
            version=version + 1,
            prev_hash=prev,
            occurred_at=_EPOCH + timedelta(seconds=self._clock),
            actor="tester",
        )
        self._heads[stream] = (event.version, event.hash)
        return event

    def create(self, flag: Flag) -> Event:
        return self.next(flag.key, "FlagCreated", {"flag": flag.model_dump(mode="json", by_alias=True)})

    def configure(
        self, key: str, environment: str, config: EnvironmentConfig, *, schema_version: int = 1
    ) -> Event:
        payload = {"config": config.model_dump(mode="json", by_alias=True), "diff": []}
        event_type = "EnvironmentConfigured" if schema_version == 1 else "FlagEnabled"
        return self.next(key, event_type, payload, environment, schema_version)


RULE = [
    {
        "id": "beta",
        "when": {"attribute": "plan", "op": "in", "values": ["beta"]},
        "serve": {"variation": "on"},
    }
]


class Poisoned:
    """Flag ``a``: v1 created, v2 configured, v3 a FlagEnabled at schema 2 (unknown to this build),
    v4 configured; flag ``b`` flows; a raw record keyed ``c`` is not JSON at all."""

    def __init__(self) -> None:
        self.chain = Chain()
        c = self.chain
        self.a = [c.create(flag_doc("a", "production")), c.configure("a", "production", on_config(False))]
        self.a.append(c.configure("a", "production", on_config(True), schema_version=2))
        self.a.append(c.configure("a", "production", on_config(True, rules=RULE)))
        self.b = [c.create(flag_doc("b", "production")), c.configure("b", "production", on_config(True))]

    def records(self) -> list[Event | bytes]:
        return [self.a[0], self.b[0], self.a[1], self.a[2], self.a[3], b"not json", self.b[1]]


@dataclass
class Wired:
    projector: Projector
    model: ResilientReadModel
    hooks: ProjectorDeadLetters


def wire_projector(
    client: Redis,
    dlq: DeadLetterStore,
    bootstrap: str,
    topic: str,
    *,
    breaker: AsyncCircuitBreaker | None = None,
    refresh_interval: float = 0.2,
) -> Wired:
    model = ResilientReadModel(client, breaker=breaker or make_projector_breaker())
    hooks = ProjectorDeadLetters(dlq, model, refresh_interval=refresh_interval)
    projector = Projector(
        model,
        bootstrap_servers=bootstrap,
        topic=topic,
        group=f"g-{topic}",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        dead_letters=hooks,
    )
    return Wired(projector, model, hooks)
