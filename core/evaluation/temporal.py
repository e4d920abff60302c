"""Date operators: ``before``, ``after``, ``between_dates``.

The attribute holds an instant: an ISO-8601 string with a UTC offset (``Z`` allowed) or a JSON
number of seconds since the Unix epoch. The special attribute name ``$now`` reads the ``now``
passed to the evaluation instead of the context, so a rule can say "after 2026-12-01". Clause
values are ISO-8601 instants with an offset, parsed once at compile time.
``before`` is ``attribute < value``, ``after`` is ``attribute > value``, ``between_dates`` is
``first <= attribute <= second``. Naive instants, unparsable text and other types do not match.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from core.evaluation.values import Context, Matcher, build_getter
from core.model import Clause, Operator

__all__ = ["NOW_ATTRIBUTE", "build_date_test", "parse_instant"]

NOW_ATTRIBUTE = "$now"


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> datetime | None:
    if len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from an ISO-8601 string or epoch seconds; ``None`` if it is not one."""
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def build_date_test(clause: Clause) -> Matcher:
    bounds = tuple(parse_instant(v) if isinstance(v, str) else None for v in clause.values)
    if not bounds or any(b is None for b in bounds):
        return _never
    low = bounds[0]
    high = bounds[-1]
    assert low is not None and high is not None
    op = clause.op
    if op is Operator.BETWEEN_DATES and len(bounds) != 2:
        return _never
    read = build_getter(clause.attribute)
    from_now = clause.attribute == NOW_ATTRIBUTE

    def match_date(context: Context, now: datetime) -> bool:
        value = now if from_now else read(context)
        instant = _parse_text(value) if value.__class__ is str else parse_instant(value)
        if instant is None:
            return False
        if op is Operator.BEFORE:
            return instant < low
        if op is Operator.AFTER:
            return instant > low
        return low <= instant <= high

    return match_date


def _never(context: Context, now: datetime) -> bool:
    return False
