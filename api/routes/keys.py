"""API keys (admin only): create (the secret is shown once), list (never secrets), revoke, rotate.

Every change is an event of ``ops:api-keys`` whose actor is the caller; a revocation is refused by
every API process within milliseconds (a Postgres NOTIFY), at worst within the auth cache's TTL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from api.deps import KeyAdmin, Services
from api.routes._manage import key_service
from events.commands.keys import DEFAULT_ROTATION_GRACE, MAX_ROTATION_GRACE
from events.store.keys import ApiKey, Role

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["api keys"])

KeyIdPath = Annotated[str, Path(pattern=r"^key_[0-9a-f]{16}$", description="Key id (key_<16 hex>)")]
Reason = Annotated[str | None, Query(max_length=1024, description="Why (kept in the audit event)")]


class KeyCreate(BaseModel):
    principal: str = Field(min_length=1, max_length=256, pattern=r"\S", description="Who the key acts as")
    role: Role
    reason: str | None = Field(default=None, max_length=1024)


class RotateBody(BaseModel):
    reason: str | None = Field(default=None, max_length=1024)
    grace_seconds: int = Field(
        default=int(DEFAULT_ROTATION_GRACE.total_seconds()),
        ge=0,
        le=int(MAX_ROTATION_GRACE.total_seconds()),
        description="How long the old secret keeps working (default 24 h; 0 revokes it at once)",
    )


class KeyOut(BaseModel):
    id: str
    principal: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = Field(default=None, description="After a rotation: when it is refused")
    active: bool


class KeyCreated(KeyOut):
    secret: str = Field(description="Shown once: only its SHA-256 is stored")
    replaces: str | None = Field(default=None, description="After a rotation: the replaced key's id")
    replaced_expires_at: datetime | None = Field(
        default=None, description="After a rotation: when the replaced key's secret stops working"
    )


class KeyList(BaseModel):
    items: list[KeyOut]


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        principal=key.principal,
        role=key.role.value,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        expires_at=key.expires_at,
        active=key.active,
    )


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key (secret shown once)")
async def create_key(services: Services, principal: KeyAdmin, body: KeyCreate) -> KeyCreated:
    created = await key_service(services).create(
        body.principal.strip(), body.role, actor=principal.name, reason=body.reason
    )
    return KeyCreated(**_out(created.key).model_dump(), secret=created.secret)


@router.get("", response_model=KeyList, summary="List API keys (never their secrets)")
async def list_keys(services: Services, principal: KeyAdmin) -> KeyList:
    return KeyList(items=[_out(k) for k in await key_service(services).list()])


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key")
async def revoke_key(
    services: Services, principal: KeyAdmin, key_id: KeyIdPath, reason: Reason = None
) -> KeyOut:
    revoked = await key_service(services).revoke(key_id, actor=principal.name, reason=reason)
    services.auth.forget_key(key_id)  # this process at once; the others by the NOTIFY
    return _out(revoked)


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=KeyCreated,
    summary="Replace a key by a new one (same principal and role); the old one works for a grace period",
)
async def rotate_key(
    services: Services, principal: KeyAdmin, key_id: KeyIdPath, body: RotateBody | None = None
) -> KeyCreated:
    body = body or RotateBody()
    created = await key_service(services).rotate(
        key_id, actor=principal.name, reason=body.reason, grace=timedelta(seconds=body.grace_seconds)
    )
    old = created.replaced
    assert old is not None
    if old.revoked_at is not None:
        services.auth.forget_key(key_id)  # grace 0: refused at once here, elsewhere by the NOTIFY
    return KeyCreated(
        **_out(created.key).model_dump(),
        secret=created.secret,
        replaces=key_id,
        replaced_expires_at=old.revoked_at or old.expires_at,
    )
