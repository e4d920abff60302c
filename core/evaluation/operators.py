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

from core.evaluation.fastpath import build_direct_matcher
from core.evaluation.patterns import build_matches_test
from core.evaluation.semver import parse_semver
from core.evaluation.temporal import build_date_test
from core.evaluation.values import Context, Matcher, Test, build_getter, build_member_test, fold, is_number
from core.model import Clause, Operator

__all__ = ["build_clause_matcher", "build_general_matcher", "never"]

_NUMBER = (int, float)


def never(context: Context, now: datetime) -> bool:
    return False


def build_clause_matcher(clause: Clause) -> Matcher:
    """Compile one (non-segment) clause."""
    if clause.op in (Operator.BEFORE, Operator.AFTER, Operator.BETWEEN_DATES):
        return build_date_test(clause)
    direct = build_direct_matcher(clause)
    if direct is not None:
        return direct
    return build_general_matcher(clause)


def build_general_matcher(clause: Clause) -> Matcher:
    """The two-step matcher (read the attribute, then test it) that handles every operator."""
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
                value = _number_text(value)
                if value is None:
                    return False
            version = parse_semver(value)
            return version is not None and compare(version, target)

        return compare_version

    return build


def _number_text(value: Any) -> str | None:
    """A JSON number as flagd writes it for ``sem_ver`` (``1``, ``1.2``; a float without fraction as an
    integer); anything else, booleans included, ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _build_contains_any(values: tuple[Any, ...], ci: bool) -> Test:
    member = build_member_test(values, ci)
    plain = None if ci else _plain_strings(values)

    def contains_any(value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        if plain is not None:
            try:
                return not plain.isdisjoint(value)
            except TypeError:  # an unhashable item (array or object): check item by item
                pass
        for item in value:  # noqa: SIM110 - a loop beats any(generator) on the hot path
            if member(item):
                return True
        return False

    return contains_any


def _build_contains_all(values: tuple[Any, ...], ci: bool) -> Test:
    tests = tuple(build_member_test((v,), ci) for v in values)
    plain = None if ci else _plain_strings(values)

    def contains_all(value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        if plain is not None:
            try:
                return plain.issubset(value)
            except TypeError:  # an unhashable item (array or object): check item by item
                pass
        return all(any(test(item) for item in value) for test in tests)

    return contains_all


def _plain_strings(values: tuple[Any, ...]) -> frozenset[str] | None:
    """The values as a set when they are all strings (then set operations are exact)."""
    if all(isinstance(v, str) for v in values):
        return frozenset(values)
    return None


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
    Operator.MATCHES: build_matches_test,
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
