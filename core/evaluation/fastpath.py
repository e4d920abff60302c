"""Single-closure matchers for the commonest clauses on top-level attributes.

The general matchers in :mod:`core.evaluation.operators` are two calls deep (read the attribute,
then test it); these read and test in one closure, which saves about a third of a clause's cost.
They implement exactly the same semantics (the operator tests run every case through both).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.evaluation.values import Context, Matcher, is_number
from core.model import Clause, Operator

__all__ = ["build_direct_matcher"]

_NUMBER_TYPES = frozenset({int, float})


def build_direct_matcher(clause: Clause) -> Matcher | None:
    """A one-closure matcher for ``clause``, or ``None`` when the general path must handle it."""
    name = clause.attribute
    if "." in name or clause.case_insensitive:
        return None
    builder = _BUILDERS.get(clause.op)
    return builder(name, clause.values) if builder is not None else None


def _build_in(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if not all(isinstance(v, str) for v in values):
        return None
    strings = frozenset(values)

    def match_in(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return isinstance(value, str) and value in strings

    return match_in


def _build_affix(method: Callable[[str, tuple[str, ...]], bool]) -> Callable[..., Matcher | None]:
    def build(name: str, values: tuple[Any, ...]) -> Matcher | None:
        if not values or not all(isinstance(v, str) for v in values):
            return None
        affixes = tuple(values)

        def match_affix(context: Context, now: datetime) -> bool:
            value = context.get(name)
            return isinstance(value, str) and method(value, affixes)

        return match_affix

    return build


def _build_lt(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if not values or not is_number(values[0]):
        return None
    bound = values[0]

    def match_lt(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return value.__class__ in _NUMBER_TYPES and value < bound

    return match_lt


def _build_lte(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if not values or not is_number(values[0]):
        return None
    bound = values[0]

    def match_lte(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return value.__class__ in _NUMBER_TYPES and value <= bound

    return match_lte


def _build_gt(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if not values or not is_number(values[0]):
        return None
    bound = values[0]

    def match_gt(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return value.__class__ in _NUMBER_TYPES and value > bound

    return match_gt


def _build_gte(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if not values or not is_number(values[0]):
        return None
    bound = values[0]

    def match_gte(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return value.__class__ in _NUMBER_TYPES and value >= bound

    return match_gte


def _build_between(name: str, values: tuple[Any, ...]) -> Matcher | None:
    if len(values) != 2 or not (is_number(values[0]) and is_number(values[1])):
        return None
    low, high = values

    def match_between(context: Context, now: datetime) -> bool:
        value = context.get(name)
        return value.__class__ in _NUMBER_TYPES and low <= value <= high

    return match_between


def _build_exists(name: str, values: tuple[Any, ...]) -> Matcher:
    def match_exists(context: Context, now: datetime) -> bool:
        return context.get(name) is not None

    return match_exists


def _build_not_exists(name: str, values: tuple[Any, ...]) -> Matcher:
    def match_not_exists(context: Context, now: datetime) -> bool:
        return context.get(name) is None

    return match_not_exists


_BUILDERS: dict[Operator, Callable[[str, tuple[Any, ...]], Matcher | None]] = {
    Operator.EQ: _build_in,
    Operator.IN: _build_in,
    Operator.STARTS_WITH: _build_affix(str.startswith),
    Operator.ENDS_WITH: _build_affix(str.endswith),
    Operator.LT: _build_lt,
    Operator.LTE: _build_lte,
    Operator.GT: _build_gt,
    Operator.GTE: _build_gte,
    Operator.BETWEEN: _build_between,
    Operator.EXISTS: _build_exists,
    Operator.NOT_EXISTS: _build_not_exists,
}
