"""The API app on a fresh database (real Postgres and Redis), an API key per role, and letter builders.

No relay or projector runs: these tests drive the dead-letter queue directly and register fake
redrivers, so what a redrive does at a stage is observed exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.container import Container
from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from core.errors import MalformedEvent
from events.deadletters import DeadLetter, DeadLetterStore, NewDeadLetter, Stage
from events.deadletters.operations import Redriver, RedriverRegistry
from events.store.keys import ApiKeyStore
from events.store.postgres import PostgresEventStore
from runtime.settings import load_settings

pytestmark = pytest.mark.integration

ROLES = ("admin", "writer", "reader", "ops", "alerts")


def an_event(flag_key: str = "checkout", version: int = 1) -> Event:
    draft = EventDraft(type="FlagEnabled", environment="production", payload={"poison": True})
    return seal(
        draft,
        event_id=uuid.uuid4(),
        flag_key=flag_key,
        version=version,
        prev_hash=GENESIS_HASH,
        occurred_at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
        actor="alice",
    )


def a_letter(
    stage: Stage = "projector",
    flag_key: str = "checkout",
    version: int = 1,
    *,
    error: BaseException | None = None,
    failed_at: datetime | None = None,
) -> NewDeadLetter:
    return NewDeadLetter.for_event(
        stage, an_event(flag_key, version), error or MalformedEvent("cannot apply"), failed_at=failed_at
    )


@dataclass
class DlqApi:
    client: httpx.AsyncClient
    keys: dict[str, str]
    app: FastAPI
    dlq: DeadLetterStore
    store: PostgresEventStore

    async def request(self, method: str, path: str, role: str = "ops", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}", **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def park(self, *letters: NewDeadLetter) -> list[DeadLetter]:
        return [await self.dlq.park(letter) for letter in letters]

    def register_redriver(self, stage: Stage, redriver: Redriver) -> None:
        """Register on the container's registry (created here until the container has one)."""
        container: Container = self.app.state.container
        registry = getattr(container, "redrivers", None)
        if not isinstance(registry, RedriverRegistry):
            registry = RedriverRegistry()
            setattr(container, "redrivers", registry)  # noqa: B010 - the field may not exist yet
        registry.register(stage, redriver)


@pytest.fixture
async def api(fresh_database: str, redis_url: str) -> AsyncIterator[DlqApi]:
    settings = load_settings(
        database_url=fresh_database,
        redis_url=redis_url,
        redis_namespace=f"fs-{uuid.uuid4().hex[:10]}",
        log_json=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        container: Container = app.state.container
        key_store = ApiKeyStore(container.pool)
        keys = {role: (await key_store.create(f"test-{role}", role))[1] for role in ROLES}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flagstream.test") as client:
            yield DlqApi(client, keys, app, DeadLetterStore(container.pool), container.store)
