"""The typed outcome of one evaluation, aligned with OpenFeature's resolution details."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ErrorCode", "EvaluationResult", "Reason"]


class Reason(StrEnum):
    """Why a value was served (OpenFeature reason names)."""

    DISABLED = "DISABLED"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    PREREQUISITE_FAILED = "PREREQUISITE_FAILED"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    """What went wrong when ``reason`` is ``ERROR`` (OpenFeature error codes)."""

    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    PARSE_ERROR = "PARSE_ERROR"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    GENERAL = "GENERAL"


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """One flag's value for one context.

    Instances are shared between evaluations (built once per compiled flag version): treat
    ``value`` as read-only, even when it is a JSON object or array.
    """

    flag_key: str
    value: Any
    variation: str | None
    reason: Reason
    rule_id: str | None = None
    error_code: ErrorCode | None = None
    version: int = 0

    @property
    def is_error(self) -> bool:
        return self.error_code is not None
