"""Helpers shared by the management routes (segments, keys, rules, transfer, bulk): parsing a body
into a model with field paths, the command metadata of a request, a command's JSON answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from api.container import Container
from api.errors import ApiError
from core.validation import issues_from_validation_error
from events.commands.attributes import AttributeCatalog
from events.commands.keys import KeyService
from events.commands.rules import RulesService
from events.commands.segments import SegmentService
from events.commands.service import CommandMeta, CommandOutcome
from events.commands.transfer import TransferService
from events.store.idempotency import compute_request_hash

__all__ = [
    "attribute_catalog",
    "command_meta",
    "key_service",
    "outcome_response",
    "parse_model",
    "rules_service",
    "segment_service",
    "transfer_service",
]

M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any, prefix: str = "") -> M:
    """``model`` from ``data``, or a 422 ``validation_error`` naming every field path."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(
            422,
            "validation_error",
            "the request is not valid",
            details=issues_from_validation_error(e, prefix),
        ) from e


def command_meta(request: Request, actor: str, idempotency_key: str | None, body: Any) -> CommandMeta:
    return CommandMeta(
        actor=actor,
        correlation_id=getattr(request.state, "request_id", None),
        idempotency_key=idempotency_key,
        request_hash=compute_request_hash(request.method, request.url.path, body)
        if idempotency_key
        else None,
    )


def outcome_response(outcome: CommandOutcome, location: str) -> JSONResponse:
    headers = {"ETag": f'"{outcome.version}"', "Location": location}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(status_code=outcome.status, content=dict(outcome.response), headers=headers)


def segment_service(services: Container) -> SegmentService:
    return SegmentService(services.guarded_store, services.execute)


def key_service(services: Container) -> KeyService:
    return KeyService(services.pool, services.store, clock=_utc_now)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def rules_service(services: Container) -> RulesService:
    return RulesService(services.commands.load_flag, segment_service(services).live_segments)


def attribute_catalog(services: Container) -> AttributeCatalog:
    return AttributeCatalog(services.redis, services.settings.redis_namespace)


def transfer_service(services: Container) -> TransferService:
    return TransferService(
        services.execute,
        services.commands.load_flag,
        services.guarded_store.stream_keys,
        segment_service(services),
    )
