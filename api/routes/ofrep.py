"""OFREP, the OpenFeature Remote Evaluation Protocol (``open-feature/protocol``, ``service/openapi.yaml``).

``POST /ofrep/v1/evaluate/flags/{key}`` and ``POST /ofrep/v1/evaluate/flags`` (bulk, with ``ETag`` and
``304`` on a matching ``If-None-Match``). Bodies are ``{"context": {...}}``; answers and failures are
shaped exactly as the specification says (``key``, ``value``, ``reason``, ``variant``, ``metadata``;
``errorCode`` and ``errorDetails``). The environment is named by the ``X-Flagstream-Environment``
header (API keys are not bound to an environment). Evaluation is served from the in-memory reader.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from api.deps import Evaluator, Services
from core.evaluation import EvaluationResult, Reason
from core.evaluation.result import ErrorCode
from core.model import EnvironmentConfig, Flag
from monitoring import metrics

__all__ = ["ENVIRONMENT_HEADER", "router"]

ENVIRONMENT_HEADER = "X-Flagstream-Environment"

router = APIRouter(prefix="/ofrep/v1", tags=["ofrep"])

# OFREP's evaluationFailure admits these codes only; anything else is reported as GENERAL.
_FAILURE_CODES = {ErrorCode.PARSE_ERROR, ErrorCode.TARGETING_KEY_MISSING, ErrorCode.INVALID_CONTEXT}

EnvironmentHeader = Annotated[
    str | None,
    Header(alias=ENVIRONMENT_HEADER, description="The environment to evaluate in, e.g. production"),
]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]


class _BadRequest(Exception):
    def __init__(self, code: ErrorCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@router.post("/evaluate/flags/{key}", summary="OFREP single flag evaluation")
async def evaluate_flag(
    key: str,
    request: Request,
    services: Services,
    principal: Evaluator,
    environment: EnvironmentHeader = None,
) -> Response:
    try:
        env = _require_environment(environment)
        context = await _read_context(request)
    except _BadRequest as e:
        return JSONResponse(
            {"key": key, "errorCode": str(e.code), "errorDetails": e.details}, status_code=400
        )
    reader = await services.readers.get(env)
    snapshot = reader.snapshot
    result = snapshot.evaluate(key, context, datetime.now(UTC))
    metrics.record_evaluation(key, env, str(result.reason), result.error_code)
    if result.error_code is ErrorCode.FLAG_NOT_FOUND:
        details = f"flag {key!r} is not defined in environment {env!r}"
        return JSONResponse(
            {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": details}, status_code=404
        )
    if result.error_code is not None:
        return JSONResponse(_failure_of(key, result), status_code=400)
    return JSONResponse(_success_of(key, result, snapshot.source_of(key), env))


@router.post("/evaluate/flags", summary="OFREP bulk evaluation (ETag / If-None-Match)")
async def evaluate_flags(
    request: Request,
    services: Services,
    principal: Evaluator,
    environment: EnvironmentHeader = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    try:
        env = _require_environment(environment)
        context = await _read_context(request)
    except _BadRequest as e:
        return JSONResponse({"errorCode": str(e.code), "errorDetails": e.details}, status_code=400)
    reader = await services.readers.get(env)
    snapshot = reader.snapshot
    results = snapshot.evaluate_all(context, datetime.now(UTC))
    flags: list[dict[str, Any]] = []
    for key, result in sorted(results.items()):
        metrics.record_evaluation(key, env, str(result.reason), result.error_code)
        if result.error_code is not None:
            flags.append(_failure_of(key, result))
        else:
            flags.append(_success_of(key, result, snapshot.source_of(key), env))
    body = json.dumps({"flags": flags}, separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


def _require_environment(environment: str | None) -> str:
    if environment is None or not environment.strip():
        raise _BadRequest(
            ErrorCode.INVALID_CONTEXT,
            f"headers.{ENVIRONMENT_HEADER.lower()}: the {ENVIRONMENT_HEADER} header names the environment",
        )
    return environment.strip()


async def _read_context(request: Request) -> Mapping[str, Any]:
    context = await _parse_context(request)
    request.state.evaluation_context = context  # for the request log (personal attributes masked there)
    return context


async def _parse_context(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _BadRequest(ErrorCode.PARSE_ERROR, f"body: not valid JSON ({e})") from e
    if not isinstance(body, dict):
        raise _BadRequest(ErrorCode.PARSE_ERROR, 'body: must be a JSON object such as {"context": {}}')
    context = body.get("context", {})
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise _BadRequest(ErrorCode.INVALID_CONTEXT, "context: must be a JSON object")
    return context


def _failure_of(key: str, result: EvaluationResult) -> dict[str, Any]:
    code = result.error_code if result.error_code in _FAILURE_CODES else ErrorCode.GENERAL
    details = f"evaluating {key!r} failed: {result.error_code}"
    if result.error_code is ErrorCode.TARGETING_KEY_MISSING:
        details = f"flag {key!r} splits its audience by a bucketing attribute the context does not carry"
    return {"key": key, "errorCode": str(code), "errorDetails": details}


def _success_of(key: str, result: EvaluationResult, flag: Flag | None, environment: str) -> dict[str, Any]:
    # The flag's own metadata first; the evaluation's keys (version, environment, ruleId) win a clash.
    metadata: dict[str, Any] = dict(flag.metadata) if flag is not None else {}
    metadata.update(version=result.version, environment=environment)
    if result.rule_id is not None:
        metadata["ruleId"] = result.rule_id
    reason = _reason_of(result, flag, environment)
    if result.reason is Reason.PREREQUISITE_FAILED:
        metadata["flagstreamReason"] = str(result.reason)
    answer: dict[str, Any] = {"key": key, "reason": reason, "value": result.value, "metadata": metadata}
    if result.variation is not None:
        answer["variant"] = result.variation
    return answer


def _reason_of(result: EvaluationResult, flag: Flag | None, environment: str) -> str:
    """OpenFeature reasons: ``STATIC`` when the flag has no targeting at all; a failed prerequisite
    (not an OpenFeature reason) is ``DEFAULT`` with ``metadata.flagstreamReason``."""
    if result.reason is Reason.PREREQUISITE_FAILED:
        return "DEFAULT"
    if result.reason is Reason.DEFAULT and flag is not None:
        config = flag.environments.get(environment)
        if config is not None and _is_static(config):
            return "STATIC"
    return str(result.reason)


def _is_static(config: EnvironmentConfig) -> bool:
    rollout = config.default.rollout if config.default is not None else None
    return not (
        config.targets or config.rules or config.prerequisites or rollout or config.schedule is not None
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
