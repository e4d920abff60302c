"""Clause operators compiled into matchers ``(context, now) -> bool``.

Every matcher is total: a missing attribute (absent or JSON null), a value of the wrong type or
a clause value that cannot be used makes the clause not match; nothing raises. Negative
operators (``neq``, ``not_in``, ``not_contains``) also need the attribute present and of the
right type; only ``not_exists`` matches a missing attribute.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

import re2

from core.evaluation.semver import parse_semver
from core.evaluation.temporal import build_date_test
from core.evaluation.values import Context, Matcher, Test, build_getter, build_member_test, fold, is_number
from core.model import Clause, Operator

__all__ = ["Matcher", "build_clause_matcher", "never"]

_NUMBER = (int, float)


def never(context: Context, now: datetime) -> bool:
    return False


def build_clause_matcher(clause: Clause) -> Matcher:
    """Compile one (non-segment) clause."""
    if clause.op in (Operator.BEFORE, Operator.AFTER, Operator.BETWEEN_DATES):
        return build_date_test(clause)
    test = _build_test(clause)
    if test is None:
        return never
    name = clause.attribute
    if "." in name:
        read = build_getter(name)

        def match_path(context: Context, now: datetime) -> bool:
            return test(read(context))

        return match_path

    def match_key(context: Context, now: datetime) -> bool:
        return test(context.get(name))

    return match_key


def _build_test(clause: Clause) -> Test | None:
    op = clause.op
    values = clause.values
    ci = clause.case_insensitive
    builder = _BUILDERS.get(op)
    if builder is None:
        return None
    return builder(values, ci)


def _build_in(values: tuple[Any, ...], ci: bool) -> Test:
    return build_member_test(values, ci)


def _build_not_in(values: tuple[Any, ...], ci: bool) -> Test:
    member = build_member_test(values, ci)

    def is_not_member(value: Any) -> bool:
        return isinstance(value, str | int | float) and not member(value)

    return is_not_member


def _strings(values: tuple[Any, ...], ci: bool) -> tuple[str, ...]:
    return tuple(fold(v, ci) for v in values if isinstance(v, str))


def _build_contains(values: tuple[Any, ...], ci: bool) -> Test | None:
    needles = _strings(values, ci)
    if not needles:
        return None

    def contains(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = fold(value, ci)
        return any(needle in text for needle in needles)

    return contains


def _build_not_contains(values: tuple[Any, ...], ci: bool) -> Test | None:
    needles = _strings(values, ci)
    if not needles:
        return None

    def does_not_contain(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = fold(value, ci)
        return not any(needle in text for needle in needles)

    return does_not_contain


def _build_starts_with(values: tuple[Any, ...], ci: bool) -> Test | None:
    prefixes = _strings(values, ci)
    if not prefixes:
        return None

    def starts_with(value: Any) -> bool:
        return isinstance(value, str) and fold(value, ci).startswith(prefixes)

    return starts_with


def _build_ends_with(values: tuple[Any, ...], ci: bool) -> Test | None:
    suffixes = _strings(values, ci)
    if not suffixes:
        return None

    def ends_with(value: Any) -> bool:
        return isinstance(value, str) and fold(value, ci).endswith(suffixes)

    return ends_with


def compile_pattern(pattern: object, ci: bool) -> Any | None:
    """An RE2 pattern, or ``None`` when ``pattern`` is not a valid expression (never logs)."""
    if not isinstance(pattern, str):
        return None
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ci
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def _build_matches(values: tuple[Any, ...], ci: bool) -> Test | None:
    searches = tuple(p.search for p in (compile_pattern(v, ci) for v in values) if p is not None)
    if not searches:
        return None

    def matches(value: Any) -> bool:
        return isinstance(value, str) and any(search(value) is not None for search in searches)

    return matches


def _build_compare(compare: Callable[[Any, Any], bool]) -> Callable[[tuple[Any, ...], bool], Test | None]:
    def build(values: tuple[Any, ...], ci: bool) -> Test | None:
        bound = values[0] if values else None
        if not is_number(bound):
            return None

        def compare_number(value: Any) -> bool:
            return isinstance(value, _NUMBER) and not isinstance(value, bool) and compare(value, bound)

        return compare_number

    return build


def _build_between(values: tuple[Any, ...], ci: bool) -> Test | None:
    if len(values) != 2 or not (is_number(values[0]) and is_number(values[1])):
        return None
    low, high = values

    def between(value: Any) -> bool:
        return isinstance(value, _NUMBER) and not isinstance(value, bool) and bool(low <= value <= high)

    return between


def _build_semver(compare: Callable[[Any, Any], bool]) -> Callable[[tuple[Any, ...], bool], Test | None]:
    def build(values: tuple[Any, ...], ci: bool) -> Test | None:
        target = parse_semver(values[0]) if values and isinstance(values[0], str) else None
        if target is None:
            return None

        def compare_version(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            version = parse_semver(value)
            return version is not None and compare(version, target)

        return compare_version

    return build


def _build_contains_any(values: tuple[Any, ...], ci: bool) -> Test:
    member = build_member_test(values, ci)

    def contains_any(value: Any) -> bool:
        return isinstance(value, list | tuple) and any(member(item) for item in value)

    return contains_any


def _build_contains_all(values: tuple[Any, ...], ci: bool) -> Test:
    tests = tuple(build_member_test((v,), ci) for v in values)

    def contains_all(value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        return all(any(test(item) for item in value) for test in tests)

    return contains_all


def _build_exists(values: tuple[Any, ...], ci: bool) -> Test:
    def exists(value: Any) -> bool:
        return value is not None

    return exists


def _build_not_exists(values: tuple[Any, ...], ci: bool) -> Test:
    def not_exists(value: Any) -> bool:
        return value is None

    return not_exists


_BUILDERS: dict[Operator, Callable[[tuple[Any, ...], bool], Test | None]] = {
    Operator.EQ: _build_in,
    Operator.IN: _build_in,
    Operator.NEQ: _build_not_in,
    Operator.NOT_IN: _build_not_in,
    Operator.CONTAINS: _build_contains,
    Operator.NOT_CONTAINS: _build_not_contains,
    Operator.STARTS_WITH: _build_starts_with,
    Operator.ENDS_WITH: _build_ends_with,
    Operator.MATCHES: _build_matches,
    Operator.LT: _build_compare(operator.lt),
    Operator.LTE: _build_compare(operator.le),
    Operator.GT: _build_compare(operator.gt),
    Operator.GTE: _build_compare(operator.ge),
    Operator.BETWEEN: _build_between,
    Operator.SEMVER_EQ: _build_semver(operator.eq),
    Operator.SEMVER_LT: _build_semver(operator.lt),
    Operator.SEMVER_GT: _build_semver(operator.gt),
    Operator.CONTAINS_ANY: _build_contains_any,
    Operator.CONTAINS_ALL: _build_contains_all,
    Operator.EXISTS: _build_exists,
    Operator.NOT_EXISTS: _build_not_exists,
}
