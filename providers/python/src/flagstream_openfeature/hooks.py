"""A hook that counts evaluations per flag, reason and error code (thread-safe)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from openfeature.flag_evaluation import FlagEvaluationDetails
from openfeature.hook import Hook, HookContext, HookHints

__all__ = ["EvaluationCounter"]


class EvaluationCounter(Hook):
    """``api.add_hooks([counter])``; ``counter.counts[(flag_key, reason, error_code)]``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str | None]] = Counter()

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints) -> None:
        reason = str(getattr(details.reason, "value", details.reason))
        code = None if details.error_code is None else str(details.error_code.value)
        with self._lock:
            self._counts[(details.flag_key, reason, code)] += 1

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        with self._lock:
            self._counts[(hook_context.flag_key, "ERROR", type(exception).__name__)] += 1

    @property
    def counts(self) -> dict[tuple[str, str, str | None], int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
