"""Conditions (clauses, ``all`` / ``any`` / ``not`` groups, segments) compiled into matchers."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime

from core.evaluation.operators import build_clause_matcher, never
from core.evaluation.values import Context, Matcher, build_getter, key_text
from core.model import AllOf, AnyOf, Clause, Condition, NotOf, Operator, Segment

__all__ = ["SegmentCache", "compile_condition"]

SegmentCache = MutableMapping[str, Matcher]

_MAX_SEGMENT_DEPTH = 16


def compile_condition(
    condition: Condition,
    segments: Mapping[str, Segment],
    cache: SegmentCache | None = None,
    _stack: tuple[str, ...] = (),
) -> Matcher:
    """A matcher for ``condition``; segments are looked up in ``segments`` and compiled once per cache."""
    cache = {} if cache is None else cache
    if isinstance(condition, Clause):
        if condition.op is Operator.IN_SEGMENT:
            return _compile_in_segment(condition, segments, cache, _stack)
        return build_clause_matcher(condition)
    if isinstance(condition, AllOf):
        return _all(tuple(compile_condition(c, segments, cache, _stack) for c in condition.all))
    if isinstance(condition, AnyOf):
        return _any(tuple(compile_condition(c, segments, cache, _stack) for c in condition.any))
    if isinstance(condition, NotOf):
        return _not(compile_condition(condition.not_, segments, cache, _stack))
    return never


def _all(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]

    def match_all(context: Context, now: datetime) -> bool:
        for matcher in matchers:  # noqa: SIM110 - a plain loop is ~2x faster than all(generator)
            if not matcher(context, now):
                return False
        return True

    return match_all


def _any(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]

    def match_any(context: Context, now: datetime) -> bool:
        for matcher in matchers:  # noqa: SIM110 - a plain loop is ~2x faster than any(generator)
            if matcher(context, now):
                return True
        return False

    return match_any


def _not(matcher: Matcher) -> Matcher:
    def match_not(context: Context, now: datetime) -> bool:
        return not matcher(context, now)

    return match_not


def _compile_in_segment(
    clause: Clause, segments: Mapping[str, Segment], cache: SegmentCache, stack: tuple[str, ...]
) -> Matcher:
    """Matches when the context is in any of the named segments.

    The clause's ``attribute`` names the context key that the segments' ``included`` and
    ``excluded`` lists hold (usually ``targetingKey``).
    """
    members = tuple(
        _compile_segment(key, clause.attribute, segments, cache, stack)
        for key in clause.values
        if isinstance(key, str)
    )
    return _any(members) if members else never


def _compile_segment(
    key: str,
    attribute: str,
    segments: Mapping[str, Segment],
    cache: SegmentCache,
    stack: tuple[str, ...],
) -> Matcher:
    cache_key = f"{attribute}\x00{key}"
    cached = cache.get(cache_key)
    if cached is not None:
        return cached
    segment = segments.get(key)
    if segment is None or segment.archived or key in stack or len(stack) >= _MAX_SEGMENT_DEPTH:
        return never
    when: Matcher = never
    if segment.when is not None:
        when = compile_condition(segment.when, segments, cache, (*stack, key))
    included = frozenset(segment.included)
    excluded = frozenset(segment.excluded)
    read = build_getter(attribute)

    def match_segment(context: Context, now: datetime) -> bool:
        subject = key_text(read(context))
        if subject is not None:
            if subject in included:
                return True
            if subject in excluded:
                return False
        return when(context, now)

    cache[cache_key] = match_segment
    return match_segment
