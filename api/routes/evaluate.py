"""Evaluation over HTTP, served from the in-memory reader of the environment (never from Redis per call).

Only environments the read model knows are served (``404 unknown_environment`` otherwise), so a
made-up name opens no reader and creates no metric series. ``?as_of=`` replays the audit log: it
needs the audit permission, runs in a worker thread (its own event loop, never the API's) and at
most ``as_of_max_concurrency`` run at once per process (``503 as_of_busy`` + ``Retry-After`` beyond).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.auth import Permission, Principal, authorise
from api.container import Container
from api.deps import Evaluator, Services
from api.errors import ApiError, parse_instant
from api.readers import require_environment
from api.schemas import EvaluateRequest, EvaluateResponse, EvaluationOut
from core.evaluation import EvaluationResult
from events.audit.access import log_audit_access
from events.audit.asof import evaluate_as_of
from events.commands.attributes import observe_evaluated_context
from monitoring import metrics

__all__ = ["evaluation_json", "router"]

router = APIRouter(prefix="/api/v1", tags=["evaluation"])


def evaluation_json(result: EvaluationResult) -> dict[str, Any]:
    """One result as the API answers it (the fields of :class:`EvaluationOut`); the fast lane
    (``api.fastlane``) serialises this dict directly."""
    return {
        "value": result.value,
        "variation": result.variation,
        "reason": str(result.reason),
        "rule_id": result.rule_id,
        "error_code": None if result.error_code is None else str(result.error_code),
        "version": result.version,
    }


def _out(result: EvaluationResult) -> EvaluationOut:
    return EvaluationOut(**evaluation_json(result))


async def _evaluate_as_of(
    services: Container, body: EvaluateRequest, instant: datetime, principal: Principal
) -> Mapping[str, EvaluationResult]:
    authorise(principal, Permission.READ_AUDIT)
    slots = services.as_of_slots
    if slots.locked():
        raise ApiError(503, "as_of_busy", "as-of evaluations are all busy in this process; retry shortly")
    log_audit_access(
        principal.name,
        "evaluate_as_of",
        {"environment": body.environment, "as_of": instant.isoformat(), "flags": body.flags},
    )
    job = evaluate_as_of(services.audit_stream(), body.environment, body.context, instant, body.flags)
    async with slots:
        # the replay reads the topic from offset 0: in a thread with its own loop, off the API's loop
        return await asyncio.to_thread(asyncio.run, job)


@router.post("/evaluate", response_model=EvaluateResponse, summary="Evaluate flags for one context")
async def evaluate(
    body: EvaluateRequest,
    request: Request,
    services: Services,
    principal: Evaluator,
    as_of: Annotated[
        str | None, Query(description="Evaluate as of an ISO-8601 instant (needs the audit permission)")
    ] = None,
) -> EvaluateResponse:
    context: dict[str, Any] = dict(body.context)
    request.state.evaluation_context = context  # for the request log (personal attributes masked there)
    if as_of is not None:
        instant = parse_instant(as_of, "as_of")
        replayed = await _evaluate_as_of(services, body, instant, principal)
        return EvaluateResponse(
            environment=body.environment,
            as_of=instant.isoformat(),
            results={k: _out(r) for k, r in replayed.items()},
        )
    await require_environment(services.readers, body.environment)
    observe_evaluated_context(services, body.context)
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
