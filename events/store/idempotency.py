"""Idempotency keys: the same key and request within 24 h answers the first response again.

A record is written by :meth:`events.store.postgres.EventStore.append` in the same transaction as the
events it answers for, so a response is stored if and only if its events are. Records are
scoped by principal (two clients may pick the same key) and expire after :data:`IDEMPOTENCY_TTL`:
an expired record is ignored by lookups and replaced by the next write with its key.

``request_hash`` = SHA-256 (hex) of ``METHOD`` + ``\\n`` + path + ``\\n`` + the canonical JSON of
the body (keys sorted, no insignificant whitespace), so key order and spacing do not matter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import JsonValue

from core.envelope import canonical_json
from events.errors import IdempotencyKeyReused

__all__ = [
    "IDEMPOTENCY_TTL",
    "IdempotencyRecord",
    "IdempotencyWrite",
    "compute_request_hash",
    "replay_response",
]

IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IdempotencyWrite:
    """The response to remember for ``(principal, key)``, written with the events it answers for."""

    principal: str
    key: str
    request_hash: str
    status: int
    response: JsonValue


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    principal: str
    key: str
    request_hash: str
    status: int
    response: JsonValue
    created_at: datetime


def compute_request_hash(method: str, path: str, body: Any) -> str:
    """SHA-256 hex of method, path and the canonical JSON of the (parsed) body."""
    text = f"{method.upper()}\n{path}\n{canonical_json(body)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def replay_response(record: IdempotencyRecord, request_hash: str) -> tuple[int, JsonValue]:
    """The stored ``(status, response)`` when the request is the same one; otherwise 422."""
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(record.key)
    return record.status, record.response
