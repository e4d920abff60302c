"""Compiling one flag's configuration in one environment into a closure (once per version)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from core.evaluation.conditions import SegmentCache, compile_condition
from core.evaluation.flagd_bucketing import build_flagd_splitter
from core.evaluation.result import ErrorCode, EvaluationResult, Reason
from core.evaluation.serve import TARGETING_KEY, Splitter, build_splitter
from core.evaluation.values import Context, Matcher, key_text
from core.model import EnvironmentConfig, Flag, Segment, Serve

__all__ = ["MAX_PREREQUISITE_DEPTH", "CompiledFlag", "Runner", "compile_flag"]

MAX_PREREQUISITE_DEPTH = 16

# run(context, now, flags, chain): ``flags`` resolves prerequisites, ``chain`` the keys being evaluated.
Runner = Callable[[Context, datetime, "Mapping[str, CompiledFlag] | None", tuple[str, ...]], EvaluationResult]

_UNSATISFIED = frozenset({Reason.DISABLED, Reason.PREREQUISITE_FAILED, Reason.ERROR})


class CompiledFlag:
    """One flag version in one environment, ready to evaluate. Immutable by convention."""

    __slots__ = ("archived", "environment", "key", "run", "version")

    def __init__(
        self, key: str, environment: str, version: int, run: Runner, *, archived: bool = False
    ) -> None:
        self.key = key
        self.environment = environment
        self.version = version
        self.run = run
        self.archived = archived

    def error_result(self, code: ErrorCode = ErrorCode.GENERAL) -> EvaluationResult:
        """A fresh error result for this flag (built only on the rare error path)."""
        return EvaluationResult(self.key, None, None, Reason.ERROR, None, code, self.version)

    def __repr__(self) -> str:
        return f"CompiledFlag(key={self.key!r}, environment={self.environment!r}, version={self.version})"


class _Outcomes:
    """Builds the shared results of one compiled flag (one object per distinct outcome)."""

    def __init__(self, flag: Flag, version: int) -> None:
        self.flag = flag
        self.version = version
        self._cache: dict[tuple[Reason, str | None, str | None, ErrorCode | None], EvaluationResult] = {}

    def serve(self, reason: Reason, variation: str | None, rule_id: str | None = None) -> EvaluationResult:
        if variation is None:
            return self._make(reason, None, rule_id, None)
        if self.flag.variation(variation) is None:
            return self.error(ErrorCode.PARSE_ERROR, rule_id)
        return self._make(reason, variation, rule_id, None)

    def error(self, code: ErrorCode, rule_id: str | None = None) -> EvaluationResult:
        return self._make(Reason.ERROR, None, rule_id, code)

    def _make(
        self, reason: Reason, variation: str | None, rule_id: str | None, code: ErrorCode | None
    ) -> EvaluationResult:
        cache_key = (reason, variation, rule_id, code)
        result = self._cache.get(cache_key)
        if result is None:
            found = self.flag.variation(variation) if variation is not None else None
            value: Any = found.value if found is not None else None
            result = EvaluationResult(self.flag.key, value, variation, reason, rule_id, code, self.version)
            self._cache[cache_key] = result
        return result


def compile_flag(
    flag: Flag,
    environment: str,
    *,
    version: int,
    segments: Mapping[str, Segment],
    segment_cache: SegmentCache | None = None,
) -> CompiledFlag:
    """Compile ``flag``'s configuration for ``environment``; never raises on a valid ``Flag``.

    ``segment_cache`` lets several flags compiled against the same ``segments`` share segment
    matchers.
    """
    outcomes = _Outcomes(flag, version)
    if flag.archived:
        return CompiledFlag(
            flag.key,
            environment,
            version,
            _constant(outcomes.error(ErrorCode.FLAG_NOT_FOUND)),
            archived=True,
        )
    config = flag.environments.get(environment)
    if config is None or not config.enabled:
        off_key = config.off_variation if config is not None else None
        return CompiledFlag(
            flag.key, environment, version, _constant(outcomes.serve(Reason.DISABLED, off_key))
        )
    cache: SegmentCache = {} if segment_cache is None else segment_cache
    run = _compile_enabled(flag.key, config, outcomes, segments, cache)
    return CompiledFlag(flag.key, environment, version, run)


def _constant(result: EvaluationResult) -> Runner:
    def serve_constant(
        context: Context, now: datetime, flags: Mapping[str, CompiledFlag] | None, chain: tuple[str, ...]
    ) -> EvaluationResult:
        return result

    return serve_constant


def _compile_serve(
    flag_key: str,
    serve: Serve,
    reason: Reason,
    rule_id: str | None,
    outcomes: _Outcomes,
    off_variation: str | None = None,
) -> tuple[EvaluationResult | None, Splitter | None]:
    if serve.rollout is None:
        return outcomes.serve(reason, serve.variation, rule_id), None
    outcome = lambda v: outcomes.serve(Reason.SPLIT, v, rule_id)  # noqa: E731
    if serve.flagd_bucketing is not None:
        # flagd serves its defaultVariant (imported as the off variation) when fractional answers null.
        broken = outcomes.error(ErrorCode.PARSE_ERROR, rule_id)
        fallback = outcomes.serve(Reason.DEFAULT, off_variation) if off_variation is not None else broken
        return None, build_flagd_splitter(flag_key, serve, outcome, fallback, broken)
    missing = outcomes.error(ErrorCode.TARGETING_KEY_MISSING, rule_id)
    return None, build_splitter(flag_key, serve, outcome, missing)


def _compile_targets(config: EnvironmentConfig, outcomes: _Outcomes) -> dict[str, EvaluationResult]:
    targets: dict[str, EvaluationResult] = {}
    for target in config.targets:
        result = outcomes.serve(Reason.TARGETING_MATCH, target.variation)
        for value in target.values:
            targets.setdefault(value, result)
    return targets


def _compile_enabled(
    flag_key: str,
    config: EnvironmentConfig,
    outcomes: _Outcomes,
    segments: Mapping[str, Segment],
    cache: SegmentCache,
) -> Runner:
    schedule = config.schedule
    start = schedule.enable_at if schedule is not None else None
    stops = [t for t in (schedule.disable_at if schedule else None, config.expires_at) if t is not None]
    stop = min(stops) if stops else None
    timed = start is not None or stop is not None
    off = outcomes.serve(Reason.DISABLED, config.off_variation) if timed else None
    prerequisites = tuple((p.flag, p.variation) for p in config.prerequisites)
    failed = outcomes.serve(Reason.PREREQUISITE_FAILED, config.off_variation) if prerequisites else None
    targets = _compile_targets(config, outcomes)
    rules: tuple[tuple[Matcher, EvaluationResult | None, Splitter | None], ...] = tuple(
        (
            compile_condition(rule.when, segments, cache) if rule.when is not None else _always,
            *_compile_serve(
                flag_key, rule.serve, Reason.TARGETING_MATCH, rule.id, outcomes, config.off_variation
            ),
        )
        for rule in config.rules
    )
    default: EvaluationResult | None = outcomes.serve(Reason.DEFAULT, None)
    default_split: Splitter | None = None
    if config.default is not None:
        default, default_split = _compile_serve(
            flag_key, config.default, Reason.DEFAULT, None, outcomes, config.off_variation
        )

    def run(
        context: Context, now: datetime, flags: Mapping[str, CompiledFlag] | None, chain: tuple[str, ...]
    ) -> EvaluationResult:
        if timed and ((start is not None and now < start) or (stop is not None and now >= stop)):
            return off  # type: ignore[return-value]
        if prerequisites and not _prerequisites_met(flag_key, prerequisites, context, now, flags, chain):
            return failed  # type: ignore[return-value]
        if targets:
            subject = context.get(TARGETING_KEY)
            if subject.__class__ is not str:
                subject = key_text(subject)
            hit = targets.get(subject)  # type: ignore[arg-type]
            if hit is not None:
                return hit
        for match, fixed, split in rules:
            if match(context, now):
                return fixed if split is None else split(context)  # type: ignore[return-value]
        return default if default_split is None else default_split(context)  # type: ignore[return-value]

    return run


def _always(context: Context, now: datetime) -> bool:
    return True


def _prerequisites_met(
    flag_key: str,
    prerequisites: tuple[tuple[str, str], ...],
    context: Context,
    now: datetime,
    flags: Mapping[str, CompiledFlag] | None,
    chain: tuple[str, ...],
) -> bool:
    """Each prerequisite flag must be on (not disabled, failed or in error) and serve the variation."""
    if flags is None or len(chain) >= MAX_PREREQUISITE_DEPTH:
        return False
    chain = (*chain, flag_key)
    for key, variation in prerequisites:
        compiled = flags.get(key)
        if compiled is None or key in chain:
            return False
        result = compiled.run(context, now, flags, chain)
        if result.variation != variation or result.reason in _UNSATISFIED:
            return False
    return True
