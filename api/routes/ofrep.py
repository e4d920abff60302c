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

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from api.deps import Evaluator, Services
from api.readers import environment_known
from core.evaluation import CompiledEnvironment, EvaluationResult, Reason
from core.evaluation.result import ErrorCode
from core.model import EnvironmentConfig, Flag
from monitoring import metrics

__all__ = [
    "ENVIRONMENT_HEADER",
    "bulk_answer",
    "failure_json",
    "if_none_match_matches",
    "router",
    "success_json",
]

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
    if not await environment_known(services.readers, env):
        details = f"flag {key!r} is not defined in environment {env!r} (the environment has no flags)"
        return JSONResponse(
            {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": details}, status_code=404
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
        return JSONResponse(failure_json(key, result), status_code=400)
    return JSONResponse(success_json(key, result, snapshot.source_of(key), env))


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
        if not await environment_known(services.readers, env):
            raise _BadRequest(
                ErrorCode.INVALID_CONTEXT,
                f"headers.{ENVIRONMENT_HEADER.lower()}: environment {env!r} has no flags",
            )
    except _BadRequest as e:
        return JSONResponse({"errorCode": str(e.code), "errorDetails": e.details}, status_code=400)
    reader = await services.readers.get(env)
    snapshot = reader.snapshot
    results = snapshot.evaluate_all(context, datetime.now(UTC))
    metrics.record_evaluations(env, results)
    body, etag = bulk_answer(snapshot, results, env)
    if if_none_match_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


def bulk_answer(
    snapshot: CompiledEnvironment, results: Mapping[str, EvaluationResult], environment: str
) -> tuple[bytes, str]:
    """The bulk body (keys sorted, compact) and its strong ``ETag``: the route's and the fast lane's,
    byte for byte, so a client's ``If-None-Match`` holds whichever path answered."""
    flags: list[dict[str, Any]] = []
    for key in sorted(results):
        result = results[key]
        if result.error_code is not None:
            flags.append(failure_json(key, result))
        else:
            flags.append(success_json(key, result, snapshot.source_of(key), environment))
    body = orjson.dumps({"flags": flags}, option=orjson.OPT_SORT_KEYS)
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


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


def failure_json(key: str, result: EvaluationResult) -> dict[str, Any]:
    code = result.error_code if result.error_code in _FAILURE_CODES else ErrorCode.GENERAL
    details = f"evaluating {key!r} failed: {result.error_code}"
    if result.error_code is ErrorCode.TARGETING_KEY_MISSING:
        details = f"flag {key!r} splits its audience by a bucketing attribute the context does not carry"
    return {"key": key, "errorCode": str(code), "errorDetails": details}


# (environment, flag key) -> (the flag it was shaped from, its metadata with version and environment,
# whether it has no targeting at all). Flags are immutable: a new version is a new object, so the
# identity check renews an entry; bounded by the number of flags x environments the process serves.
_SHAPES: dict[tuple[str, str], tuple[Flag | None, int | None, dict[str, Any], bool]] = {}
_MAX_SHAPES = 100_000
_REASON_TEXT = {reason: str(reason) for reason in Reason}


def success_json(key: str, result: EvaluationResult, flag: Flag | None, environment: str) -> dict[str, Any]:
    """One OFREP success. The flag's own metadata first; the evaluation's keys (version, environment,
    ruleId) win a clash. The answer may share its ``metadata`` with other answers: never mutate it."""
    metadata, static = _shape_of(key, result.version, flag, environment)
    reason = result.reason
    if reason is Reason.PREREQUISITE_FAILED:
        text = "DEFAULT"  # not an OpenFeature reason: DEFAULT, with Flagstream's in the metadata
        metadata = {**metadata, "flagstreamReason": _REASON_TEXT[reason]}
    elif reason is Reason.DEFAULT and static:
        text = "STATIC"  # OpenFeature's reason for a flag without any targeting
    else:
        text = _REASON_TEXT[reason]
    if result.rule_id is not None:
        metadata = {**metadata, "ruleId": result.rule_id}
    answer: dict[str, Any] = {"key": key, "reason": text, "value": result.value, "metadata": metadata}
    if result.variation is not None:
        answer["variant"] = result.variation
    return answer


def _shape_of(
    key: str, version: int | None, flag: Flag | None, environment: str
) -> tuple[dict[str, Any], bool]:
    shape = _SHAPES.get((environment, key))
    if shape is not None and shape[0] is flag and shape[1] == version:
        return shape[2], shape[3]
    metadata: dict[str, Any] = dict(flag.metadata) if flag is not None else {}
    metadata.update(version=version, environment=environment)
    config = flag.environments.get(environment) if flag is not None else None
    static = config is not None and _is_static(config)
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()
    _SHAPES[(environment, key)] = (flag, version, metadata, static)
    return metadata, static


def _is_static(config: EnvironmentConfig) -> bool:
    rollout = config.default.rollout if config.default is not None else None
    return not (
        config.targets or config.rules or config.prerequisites or rollout or config.schedule is not None
    )


def if_none_match_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
