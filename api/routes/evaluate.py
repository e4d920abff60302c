"""Evaluation over HTTP, served from the in-memory reader of the environment (never from Redis per call)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Evaluator, Services
from api.errors import parse_instant
from api.schemas import EvaluateRequest, EvaluateResponse, EvaluationOut
from core.evaluation import EvaluationResult
from monitoring import metrics

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


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
        instant = parse_instant(as_of, "as_of")
        results = await services.evaluate_as_of(
            body.environment, body.context, instant, body.flags, principal
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
        metrics.record_evaluation(key, body.environment, str(result.reason), result.error_code)
    return EvaluateResponse(
        environment=body.environment,
        results={k: _out(r) for k, r in results.items()},
        staleness_seconds=round(reader.staleness_seconds, 3),
    )
