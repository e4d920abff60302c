"""The ``matches`` operator: RE2 regular expressions, compiled once and shared between clauses.

RE2 runs in time linear in the input, so a user's pattern can never hang the evaluator. Patterns
are compiled with ``log_errors=False`` (an invalid pattern is silently a never-matching clause, it
never writes to stderr) and ``never_capture=True`` (only "does it match" is needed).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from core.evaluation.values import Test

__all__ = ["build_matches_test", "compile_pattern"]


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str, ci: bool) -> Any | None:
    """An RE2 pattern shared by every clause using it; ``None`` if invalid (never logs, never raises)."""
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    options.case_sensitive = not ci
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def _searcher(pattern: Any) -> Test:
    """``text -> bool``: RE2's low-level ``Match`` when this google-re2 exposes it (3x faster
    than ``search``, which builds a match object), else the public ``search``."""
    low_level = getattr(pattern, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if low_level is None or anchor is None:  # pragma: no cover - depends on the google-re2 build
        search = pattern.search

        def search_public(text: str) -> bool:
            return search(text) is not None

        return search_public
    match = low_level.Match

    def search_low_level(text: str) -> bool:
        data = text.encode()
        return bool(match(anchor, data, 0, len(data))[0][0] >= 0)

    return search_low_level


def build_matches_test(values: tuple[Any, ...], ci: bool) -> Test | None:
    patterns = [compile_pattern(v, ci) for v in values if isinstance(v, str)]
    searches = tuple(_searcher(p) for p in patterns if p is not None)
    if not searches:
        return None
    if len(searches) == 1:
        (search,) = searches

        def matches_one(value: Any) -> bool:
            return isinstance(value, str) and search(value)

        return matches_one

    def matches(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        for search in searches:  # noqa: SIM110 - a loop beats any(generator) on the hot path
            if search(value):
                return True
        return False

    return matches
