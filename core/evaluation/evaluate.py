"""Evaluating a compiled flag for one context: total, never raises."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.evaluation.compile import CompiledFlag
from core.evaluation.result import ErrorCode, EvaluationResult, Reason

__all__ = ["evaluate", "flag_not_found", "invalid_context"]


def flag_not_found(flag_key: str = "") -> EvaluationResult:
    return EvaluationResult(flag_key, None, None, Reason.ERROR, None, ErrorCode.FLAG_NOT_FOUND, 0)


_NOT_FOUND = flag_not_found()


def invalid_context(compiled: CompiledFlag) -> EvaluationResult:
    return compiled.error_result(ErrorCode.INVALID_CONTEXT)


def evaluate(
    compiled: CompiledFlag | None,
    context: Mapping[str, Any],
    now: datetime,
    *,
    flags: Mapping[str, CompiledFlag] | None = None,
) -> EvaluationResult:
    """The flag's value for ``context`` at ``now`` (an aware datetime).

    ``flags`` resolves prerequisites (usually every compiled flag of the environment); without
    it a flag with prerequisites serves its off variation with ``PREREQUISITE_FAILED``.
    ``compiled=None`` (an unknown flag) gives ``FLAG_NOT_FOUND`` with an empty ``flag_key``.
    """
    if compiled is None:
        return _NOT_FOUND
    if context.__class__ is not dict and not isinstance(context, Mapping):
        return invalid_context(compiled)
    try:
        return compiled.run(context, now, flags, ())
    except Exception:  # bad data must never escape: a last resort, not a control path
        return compiled.error_result()
