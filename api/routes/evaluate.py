"""Evaluation over HTTP, served from the in-memory reader of the environment (never from Redis per call)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Evaluator, Services
from api.errors import ApiError
from api.schemas import EvaluateRequest, EvaluateResponse, EvaluationOut
from core.evaluation import EvaluationResult
from monitoring import metrics

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


def _parse_instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ApiError(
            422,
            "validation_error",
            "as_of must be an ISO-8601 instant",
            details=[{"path": "as_of", "message": "not an ISO-8601 instant"}],
        ) from e
    if parsed.tzinfo is None:
        raise ApiError(
            422,
            "validation_error",
            "as_of needs a UTC offset (e.g. 2026-11-01T12:00:00Z)",
            details=[{"path": "as_of", "message": "no UTC offset"}],
        )
    return parsed


def _out(result: EvaluationResult) -> EvaluationOut:
    return EvaluationOut(
        value=result.value,
        variation=result.variation,
        reason=str(result.reason),
        rule_id=result.rule_id,
        error_code=None if result.error_code is None else str(result.error_code),
        version=result.version,
    )


@router.post("/evaluate", response_model=EvaluateResponse, summary="Evaluate flags for one context")
async def evaluate(
    body: EvaluateRequest,
    services: Services,
    principal: Evaluator,
    as_of: Annotated[str | None, Query(description="Evaluate as of an ISO-8601 instant")] = None,
) -> EvaluateResponse:
    if as_of is not None:
        instant = _parse_instant(as_of)
        from events.audit.asof import evaluate_as_of_for_api

        results = await evaluate_as_of_for_api(
            services, body.environment, body.context, instant, body.flags, principal
        )
        return EvaluateResponse(
            environment=body.environment,
            as_of=instant.isoformat(),
            results={k: _out(r) for k, r in results.items()},
        )
    reader = await services.readers.get(body.environment)
    now = datetime.now(UTC)
    if body.flags is None:
        results = reader.evaluate_all(body.context, now)
    else:
        results = {key: reader.evaluate(key, body.context, now) for key in body.flags}
    for key, result in results.items():
        metrics.record_evaluation(key, body.environment, str(result.reason))
    return EvaluateResponse(
        environment=body.environment,
        results={k: _out(r) for k, r in results.items()},
        staleness_seconds=round(reader.staleness_seconds, 3),
    )
