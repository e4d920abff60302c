"""Rules validation and preview: a configuration checked or evaluated before (or without) saving.

``validate`` reports every problem with its field path (structure from the model, references from
:mod:`core.validation` against the live segments and prerequisite flags) plus the warnings and
complexity score of :mod:`core.analysis`. ``preview`` compiles the configuration as if saved and
evaluates each context with the engine the evaluators use (:mod:`core.evaluation`), so what the
preview shows is what evaluation will answer once the configuration is saved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from core.analysis import analyze_environment
from core.errors import FlagNotFound, InvalidConfiguration
from core.evaluation import CompiledFlag, compile_flag, evaluate
from core.model import EnvironmentConfig, Flag, Segment
from core.state import Catalog, FlagState
from core.validation import Issue, issues_from_validation_error, validate_environment

__all__ = ["PreviewReport", "RulesService", "ValidationReport"]

_MAX_PREREQUISITE_FLAGS = 200

LoadFlag = Callable[[str], Awaitable[FlagState]]
LoadSegments = Callable[[], Awaitable[dict[str, Segment]]]


@dataclass(frozen=True, slots=True)
class ValidationReport:
    problems: list[Issue]
    warnings: list[dict[str, str]] = field(default_factory=list)
    complexity: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "problems": self.problems,
            "warnings": self.warnings,
            "complexity": self.complexity,
        }


@dataclass(frozen=True, slots=True)
class PreviewReport:
    results: list[dict[str, Any]]
    counts: dict[str, int]
    version: int
    warnings: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "counts": self.counts,
            "version": self.version,
            "warnings": self.warnings,
        }


@dataclass(frozen=True, slots=True)
class _Subject:
    flag: Flag
    version: int
    config: EnvironmentConfig
    segments: dict[str, Segment]
    others: dict[str, Flag]


class RulesService:
    def __init__(self, load_flag: LoadFlag, load_segments: LoadSegments) -> None:
        self._load_flag = load_flag
        self._load_segments = load_segments

    async def validate(
        self, flag: str | Mapping[str, Any], environment: str, config: Any
    ) -> ValidationReport:
        """Every problem of ``config`` for ``flag`` in ``environment`` (paths under ``config.``)."""
        base, version = await self._flag(flag)
        try:
            parsed = EnvironmentConfig.model_validate(config)
        except ValidationError as e:
            return ValidationReport(problems=issues_from_validation_error(e, "config"))
        subject = await self._subject(base, version, environment, parsed)
        return _report(subject, environment)

    async def preview(
        self,
        flag: str | Mapping[str, Any],
        environment: str,
        config: Any,
        contexts: Sequence[Mapping[str, Any]],
        now: datetime,
    ) -> PreviewReport:
        """Each context's result under ``config`` as if saved; ``InvalidConfiguration`` if it cannot be."""
        base, version = await self._flag(flag)
        try:
            parsed = EnvironmentConfig.model_validate(config)
        except ValidationError as e:
            raise InvalidConfiguration(
                "the configuration is not valid", details=issues_from_validation_error(e, "config")
            ) from e
        subject = await self._subject(base, version, environment, parsed)
        report = _report(subject, environment)
        if not report.valid:
            raise InvalidConfiguration("the configuration is not valid", details=report.problems)
        compiled = compile_flag(subject.flag, environment, version=version, segments=subject.segments)
        others: dict[str, CompiledFlag] = {
            key: compile_flag(other, environment, version=0, segments=subject.segments)
            for key, other in subject.others.items()
        }
        others[compiled.key] = compiled
        results: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for index, context in enumerate(contexts):
            result = evaluate(compiled, context, now, flags=others)
            counts[result.variation or "(none)"] += 1
            results.append(
                {
                    "index": index,
                    "key": context.get("targetingKey"),
                    "value": result.value,
                    "variation": result.variation,
                    "reason": result.reason.value,
                    "rule_id": result.rule_id,
                    "error_code": result.error_code.value if result.error_code else None,
                }
            )
        return PreviewReport(results, dict(sorted(counts.items())), version, report.warnings)

    async def _flag(self, flag: str | Mapping[str, Any]) -> tuple[Flag, int]:
        if isinstance(flag, str):
            state = await self._load_flag(flag)
            if state.flag is None or state.flag.archived:
                raise FlagNotFound(
                    f"flag {flag!r} does not exist", details=[{"path": "flag", "message": "unknown"}]
                )
            return state.flag, state.version
        try:
            return Flag.model_validate(flag), 0  # a flag not saved yet
        except ValidationError as e:
            raise InvalidConfiguration(
                "the flag is not valid", details=issues_from_validation_error(e, "flag")
            ) from e

    async def _subject(
        self, base: Flag, version: int, environment: str, config: EnvironmentConfig
    ) -> _Subject:
        flag = base.model_copy(update={"environments": {**base.environments, environment: config}})
        segments = {k: s for k, s in (await self._load_segments()).items() if not s.archived}
        others: dict[str, Flag] = {}
        frontier = {p.flag for p in config.prerequisites} - {flag.key}
        while frontier and len(others) < _MAX_PREREQUISITE_FLAGS:
            key = frontier.pop()
            other = (await self._load_flag(key)).flag
            if other is None or other.archived:
                continue
            others[key] = other
            env = other.environments.get(environment)
            if env is not None:
                frontier |= {p.flag for p in env.prerequisites} - set(others) - {flag.key}
        return _Subject(flag, version, config, segments, others)


def _report(subject: _Subject, environment: str) -> ValidationReport:
    catalog = Catalog.build([*subject.others.values()], subject.segments.values())
    problems = validate_environment(subject.flag, environment, subject.config, catalog, prefix="config.")
    analysis = analyze_environment(subject.config)
    return ValidationReport(
        problems=problems,
        warnings=[{**w.to_dict(), "path": f"config.{w.path}"} for w in analysis.warnings],
        complexity=analysis.complexity,
    )
