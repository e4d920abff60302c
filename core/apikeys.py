"""API-key changes as audit events of the stream ``ops:api-keys`` (never the secret).

Registered in :mod:`core.events` (imported at its end), so every reader of events knows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import Field

from core.events import EventType, Payload, register_payload

__all__ = ["API_KEYS_STREAM", "ApiKeyCreatedPayload", "ApiKeyRevokedPayload", "ApiKeyRotatedPayload"]

API_KEYS_STREAM: Final = "ops:api-keys"


class ApiKeyCreatedPayload(Payload):
    event_type = EventType.API_KEY_CREATED
    key_id: str = Field(min_length=1, max_length=64)
    principal: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=32)


class ApiKeyRevokedPayload(Payload):
    event_type = EventType.API_KEY_REVOKED
    key_id: str = Field(min_length=1, max_length=64)
    principal: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=32)


class ApiKeyRotatedPayload(Payload):
    """A key replaced by a new one for the same principal and role; the old one keeps working for
    ``grace_seconds`` (until ``old_key_expires_at``), or is revoked at once when the grace is 0."""

    event_type = EventType.API_KEY_ROTATED
    key_id: str = Field(min_length=1, max_length=64, description="the replaced key")
    new_key_id: str = Field(min_length=1, max_length=64)
    principal: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=32)
    grace_seconds: int = Field(default=0, ge=0, description="how long the old secret stays valid")
    old_key_expires_at: datetime | None = Field(default=None, description="when the old secret is refused")


for _model in (ApiKeyCreatedPayload, ApiKeyRevokedPayload, ApiKeyRotatedPayload):
    register_payload(_model)
