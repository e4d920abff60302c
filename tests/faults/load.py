"""A load driver for the fault tests: several clients sending a steady stream of flag commands.

Every command is recorded with its outcome, in the style of a Jepsen history:

- ``ok``: a 2xx answer (its version and event ids are kept: the checker proves they are durable);
- ``unavailable``: a 503 (``retry_after`` holds its ``Retry-After`` header, which must be there);
- ``fail``: any other definite answer (4xx/5xx): the command did not happen;
- ``info``: no answer within the bound, or a transport error: it may or may not have happened.

The driver is seeded: the same seed gives the same sequence of commands per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["ENVIRONMENTS", "CommandRecord", "LoadDriver", "Send", "make_config"]

ENVIRONMENTS = ("production", "staging")
Send = Callable[..., Awaitable[httpx.Response]]  # (method, path, json=...) -> response


@dataclass
class CommandRecord:
    client: int
    op: str
    flag: str
    environment: str
    sent_at: float
    outcome: str = "pending"  # ok | unavailable | fail | info
    status: int | None = None
    version: int | None = None
    event_ids: list[str] = field(default_factory=list)
    retry_after: str | None = None
    answered_at: float | None = None
    error: str | None = None


def make_config(counter: int, *, enabled: bool) -> dict[str, Any]:
    """A valid configuration that differs on every call (so every PUT is a real change)."""
    return {
        "enabled": enabled,
        "off_variation": "off",
        "targets": [{"variation": "on", "values": [f"user-{counter}"]}],
        "rules": [],
        "default": {"variation": "off"},
    }


class LoadDriver:
    """``clients`` concurrent clients, each sending one command then pausing ``pace`` seconds."""

    def __init__(
        self,
        send: Send,
        flags: list[str],
        *,
        clients: int = 4,
        seed: int = 7,
        pace: float = 0.05,
        request_timeout: float = 15.0,
    ) -> None:
        self._send = send
        self.flags = flags
        self._clients = clients
        self._seed = seed
        self._pace = pace
        self._request_timeout = request_timeout
        self.history: list[CommandRecord] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._counter = 0

    def start(self) -> None:
        self._stop.clear()
        for client in range(self._clients):
            rng = random.Random(self._seed * 1000 + client)
            self._tasks.append(asyncio.create_task(self._run_client(client, rng), name=f"load-{client}"))

    async def stop(self) -> None:
        """Stop sending; wait (bounded by the request timeout) for the commands in flight."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

    def count(self, outcome: str) -> int:
        return sum(1 for record in self.history if record.outcome == outcome)

    def acknowledged(self) -> list[CommandRecord]:
        return [record for record in self.history if record.outcome == "ok"]

    async def _run_client(self, client: int, rng: random.Random) -> None:
        while not self._stop.is_set():
            op, flag, environment = (
                rng.choice(("put", "put", "enable", "disable")),
                rng.choice(self.flags),
                rng.choice(ENVIRONMENTS),
            )
            record = CommandRecord(client, op, flag, environment, time.monotonic())
            self.history.append(record)
            await self._execute(record, rng)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._pace)

    async def _execute(self, record: CommandRecord, rng: random.Random) -> None:
        path = f"/api/v1/flags/{record.flag}/environments/{record.environment}"
        self._counter += 1
        if record.op == "put":
            request = self._send("PUT", path, json=make_config(self._counter, enabled=rng.random() < 0.5))
        else:
            request = self._send("POST", f"{path}/{record.op}", json={"reason": "fault test"})
        try:
            response = await asyncio.wait_for(request, timeout=self._request_timeout)
        except Exception as e:  # no definite answer (timeout, transport, app crash): indeterminate
            record.outcome, record.error = "info", type(e).__name__
            return
        finally:
            record.answered_at = time.monotonic()
        record.status = response.status_code
        if 200 <= response.status_code < 300:
            body = response.json()
            record.outcome, record.version = "ok", int(body["version"])
            record.event_ids = [str(event_id) for event_id in body.get("event_ids") or []]
        elif response.status_code == 503:
            record.outcome, record.retry_after = "unavailable", response.headers.get("Retry-After")
        else:
            record.outcome, record.error = "fail", response.text[:300]
