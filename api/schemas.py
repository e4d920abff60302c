"""Request and response bodies of the HTTP API (the OpenAPI schema at ``/docs`` is built from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.model import ENVIRONMENT_PATTERN, FlagMetadata, Variation

__all__ = [
    "CommandResponse",
    "EvaluateRequest",
    "EvaluateResponse",
    "EvaluationOut",
    "FlagListResponse",
    "FlagOut",
    "MetadataPatch",
    "ReasonBody",
    "RollbackRequest",
]


class ReasonBody(BaseModel):
    """Optional body of enable / disable / archive / restore."""

    # strict: "5" is not a version, "yes" is not true (request models accept JSON types as they are)
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, max_length=1024)
    expected_version: int | None = Field(default=None, ge=0)


class MetadataPatch(ReasonBody):
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    tags: list[str] | None = None
    owner: str | None = Field(default=None, max_length=256)
    temporary: bool | None = None
    variations: list[Variation] | None = None
    metadata: FlagMetadata | None = Field(
        default=None,
        description="Replaces the flag's metadata (strings, numbers, booleans; at most 32 entries); "
        "{} clears it.",
    )


class RollbackRequest(ReasonBody):
    to_version: int = Field(
        ge=0, description="Restore the environment configuration in force at this version."
    )


class CommandResponse(BaseModel):
    key: str
    version: int
    event_id: str | None
    event_ids: list[str]
    events: list[dict[str, Any]]
    changed: bool
    projected: bool | None = Field(default=None, description="With ?wait=projected: the read model shows it.")


class FlagOut(BaseModel):
    key: str
    version: int
    flag: dict[str, Any]
    updated_at: str | None = None


class FlagListResponse(BaseModel):
    items: list[FlagOut]
    next_cursor: str | None = None


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    environment: str = Field(pattern=ENVIRONMENT_PATTERN)
    context: dict[str, JsonValue] = Field(default_factory=dict)
    flags: list[str] | None = Field(default=None, max_length=1000)


class EvaluationOut(BaseModel):
    value: JsonValue
    variation: str | None
    reason: str
    rule_id: str | None = None
    error_code: str | None = None
    version: int | None = None


class EvaluateResponse(BaseModel):
    environment: str
    results: dict[str, EvaluationOut]
    as_of: str | None = None
    staleness_seconds: float | None = None
