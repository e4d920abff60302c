"""An OpenFeature provider that evaluates in process over the Redis read model of one environment."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode as OFErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata
from redis import Redis
from redis.exceptions import RedisError

from core.evaluation import EvaluationResult
from core.evaluation import Reason as CoreReason
from core.evaluation.result import ErrorCode
from core.model import EnvironmentConfig, Flag
from flagstream_openfeature.follower import SnapshotFollower
from projections.keys import DEFAULT_NAMESPACE

__all__ = ["FlagstreamProvider", "ProviderNotReady"]

T = TypeVar("T")
_Answer = tuple[str, dict[str, int | float | str | bool]]

_ERROR_CODES = {
    code.value: OFErrorCode(code.value) for code in ErrorCode if code.value in OFErrorCode._value2member_map_
}


class ProviderNotReady(RuntimeError):
    """Redis could not be reached when the provider was initialised."""


class FlagstreamProvider(AbstractProvider):
    """``FlagstreamProvider("redis://...", "production")``: evaluates locally, in microseconds.

    Emits ``PROVIDER_READY`` once loaded (again after Redis comes back), ``PROVIDER_CONFIGURATION_CHANGED``
    with the changed flag keys, ``PROVIDER_STALE`` while Redis is away (the last snapshot keeps serving)
    and ``PROVIDER_ERROR`` on an unexpected failure of the follower.
    """

    def __init__(
        self,
        redis: str | Redis,
        environment: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self._client = (
            Redis.from_url(redis, socket_timeout=2.0, socket_connect_timeout=2.0)
            if isinstance(redis, str)
            else redis
        )
        self._owns_client = isinstance(redis, str)
        self._clock = clock or _utc_now
        self._answers: dict[int, tuple[EvaluationResult, _Answer]] = {}
        self.follower = SnapshotFollower(
            self._client,
            environment,
            namespace=namespace,
            poll_interval=poll_interval,
            listener=self._on_follower,
        )

    # --- lifecycle -------------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstream")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        try:
            self.follower.start()
        except (RedisError, OSError) as e:
            raise ProviderNotReady(
                f"cannot load environment {self.follower.environment!r} from redis: {e}"
            ) from e

    def shutdown(self) -> None:
        self.follower.stop()
        if self._owns_client:
            self._client.close()

    def _on_follower(self, kind: str, flag_keys: list[str]) -> None:
        if kind == "changed":
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=flag_keys))
        elif kind == "stale":
            self.emit_provider_stale(
                ProviderEventDetails(message="redis unreachable: serving the last snapshot")
            )
        elif kind == "ready":
            self.emit_provider_ready(ProviderEventDetails(message="reconnected to redis"))
        else:
            self.emit_provider_error(
                ProviderEventDetails(message="the read-model follower failed", error_code=OFErrorCode.GENERAL)
            )

    # --- resolution ------------------------------------------------------------------------

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: v.__class__ is bool)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: isinstance(v, str))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _is_integer)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, _is_number)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(
            flag_key, default_value, evaluation_context, lambda v: isinstance(v, dict | list)
        )

    def _resolve(
        self, flag_key: str, default: T, context: EvaluationContext | None, fits: Callable[[Any], bool]
    ) -> FlagResolutionDetails[T]:
        snapshot = self.follower.snapshot
        result = snapshot.evaluate(flag_key, _context_of(context), self._clock())
        if result.error_code is not None:
            code = _ERROR_CODES.get(result.error_code.value, OFErrorCode.GENERAL)
            message = f"{flag_key}: {result.error_code.value}"
            return FlagResolutionDetails(default, code, message, Reason.ERROR)
        if not fits(result.value):
            message = f"{flag_key}: the flag's value {result.value!r} is not of the requested type"
            return FlagResolutionDetails(default, OFErrorCode.TYPE_MISMATCH, message, Reason.ERROR)
        value: T = result.value
        entry = self._answers.get(id(result))  # results are shared per flag version: map each once
        if entry is not None and entry[0] is result:
            cached = entry[1]
        else:
            flag = snapshot.source_of(flag_key)
            config = flag.environments.get(snapshot.environment) if flag is not None else None
            cached = self._remember(result, (reason_of(result, config), _metadata_of(result, flag)))
        return FlagResolutionDetails(value, None, None, cached[0], result.variation, dict(cached[1]))

    def _remember(self, result: EvaluationResult, answer: _Answer) -> _Answer:
        if len(self._answers) >= 4096:  # bounded: results of replaced flag versions are not kept forever
            self._answers.clear()
        self._answers[id(result)] = (result, answer)  # the result is kept: its id cannot be reused
        return answer


def reason_of(result: EvaluationResult, config: EnvironmentConfig | None) -> str:
    """The OpenFeature reason: ``STATIC`` for a flag without any targeting; a failed prerequisite
    (no OpenFeature reason) is ``DEFAULT`` — the same mapping as the API's OFREP endpoints."""
    if result.reason is CoreReason.PREREQUISITE_FAILED:
        return Reason.DEFAULT
    if result.reason is CoreReason.DEFAULT and config is not None and _is_static(config):
        return Reason.STATIC
    return Reason(result.reason.value)


def _is_static(config: EnvironmentConfig) -> bool:
    rollout = config.default.rollout if config.default is not None else None
    return not (
        config.targets or config.rules or config.prerequisites or rollout or config.schedule is not None
    )


def _metadata_of(result: EvaluationResult, flag: Flag | None) -> dict[str, int | float | str | bool]:
    """The flag's own metadata, then the evaluation's keys (which win a clash), as the OFREP answers."""
    metadata: dict[str, int | float | str | bool] = dict(flag.metadata) if flag is not None else {}
    metadata["version"] = result.version
    if result.rule_id is not None:
        metadata["ruleId"] = result.rule_id
    if result.reason is CoreReason.PREREQUISITE_FAILED:
        metadata["flagstreamReason"] = result.reason.value
    return metadata


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _context_of(context: EvaluationContext | None) -> dict[str, Any]:
    if context is None:
        return {}
    if context.targeting_key is None:
        return dict(context.attributes)
    return {**context.attributes, "targetingKey": context.targeting_key}


def _is_integer(value: Any) -> bool:
    return value.__class__ is int or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and value.__class__ is not bool
