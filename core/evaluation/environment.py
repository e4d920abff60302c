"""Every flag of one environment, compiled: the evaluators' in-memory snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core.evaluation.compile import CompiledFlag, compile_flag
from core.evaluation.conditions import SegmentCache
from core.evaluation.evaluate import evaluate, flag_not_found, invalid_context
from core.evaluation.result import EvaluationResult
from core.model import Flag, Segment

__all__ = ["CompiledEnvironment", "compile_environment"]


class CompiledEnvironment:
    """An immutable snapshot: ``with_flag`` / ``without`` / ``with_segments`` return new ones."""

    __slots__ = ("_compiled", "_live", "_segment_cache", "_sources", "environment", "segments")

    def __init__(
        self,
        environment: str,
        segments: Mapping[str, Segment],
        sources: dict[str, tuple[Flag, int]],
        compiled: dict[str, CompiledFlag],
        segment_cache: SegmentCache,
    ) -> None:
        self.environment = environment
        self.segments = segments
        self._sources = sources
        self._compiled = compiled
        self._segment_cache = segment_cache
        self._live = tuple((key, c.run) for key, c in compiled.items() if not c.archived)

    def __len__(self) -> int:
        return len(self._compiled)

    def __contains__(self, key: object) -> bool:
        return key in self._compiled

    @property
    def flags(self) -> Mapping[str, CompiledFlag]:
        return self._compiled

    def get(self, key: str) -> CompiledFlag | None:
        return self._compiled.get(key)

    def source_of(self, key: str) -> Flag | None:
        """The flag definition ``key`` was compiled from (``None`` for an unknown key)."""
        source = self._sources.get(key)
        return source[0] if source is not None else None

    def version_of(self, key: str) -> int | None:
        source = self._sources.get(key)
        return source[1] if source is not None else None

    def evaluate(self, key: str, context: Mapping[str, Any], now: datetime) -> EvaluationResult:
        compiled = self._compiled.get(key)
        if compiled is None:
            return flag_not_found(key)
        return evaluate(compiled, context, now, flags=self._compiled)

    def evaluate_all(self, context: Mapping[str, Any], now: datetime) -> dict[str, EvaluationResult]:
        """Every non-archived flag's result for one context (the bulk path)."""
        flags = self._compiled
        if context.__class__ is not dict and not isinstance(context, Mapping):
            return {key: invalid_context(flags[key]) for key, _ in self._live}
        try:
            return {key: run(context, now, flags, ()) for key, run in self._live}
        except Exception:
            return {key: evaluate(flags[key], context, now, flags=flags) for key, _ in self._live}

    def with_flag(self, flag: Flag, version: int) -> CompiledEnvironment:
        """A snapshot where ``flag`` (at ``version``) replaces its previous version."""
        compiled = compile_flag(
            flag, self.environment, version=version, segments=self.segments, segment_cache=self._segment_cache
        )
        sources = {**self._sources, flag.key: (flag, version)}
        flags = {**self._compiled, flag.key: compiled}
        return CompiledEnvironment(self.environment, self.segments, sources, flags, self._segment_cache)

    def without(self, key: str) -> CompiledEnvironment:
        if key not in self._compiled:
            return self
        sources = {k: v for k, v in self._sources.items() if k != key}
        flags = {k: v for k, v in self._compiled.items() if k != key}
        return CompiledEnvironment(self.environment, self.segments, sources, flags, self._segment_cache)

    def with_segments(self, segments: Mapping[str, Segment]) -> CompiledEnvironment:
        """Recompile every flag against new segments (segment matchers are inlined at compile time)."""
        return compile_environment(self._sources.values(), self.environment, segments)


def compile_environment(
    flags: Iterable[tuple[Flag, int]], environment: str, segments: Mapping[str, Segment]
) -> CompiledEnvironment:
    """Compile ``(flag, version)`` pairs for ``environment``; a later pair for a key wins."""
    cache: SegmentCache = {}
    segments = dict(segments)
    sources: dict[str, tuple[Flag, int]] = {}
    compiled: dict[str, CompiledFlag] = {}
    for flag, version in flags:
        sources[flag.key] = (flag, version)
        compiled[flag.key] = compile_flag(
            flag, environment, version=version, segments=segments, segment_cache=cache
        )
    return CompiledEnvironment(environment, segments, sources, compiled, cache)
