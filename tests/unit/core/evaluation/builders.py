"""Small builders for evaluation tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.evaluation import CompiledFlag, compile_flag
from core.model import Clause, Flag, Segment

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ENV = "production"


def make_flag(key: str = "flag-1", env: dict[str, Any] | None = None, **fields: Any) -> Flag:
    config = {"enabled": True, "off_variation": "off", "default": {"variation": "off"}}
    if env is not None:
        config = {**config, **env}
    return Flag.model_validate({"key": key, "environments": {ENV: config}, **fields})


def compile_env(
    env: dict[str, Any] | None = None,
    *,
    key: str = "flag-1",
    version: int = 1,
    segments: dict[str, Segment] | None = None,
    **fields: Any,
) -> CompiledFlag:
    return compile_flag(make_flag(key, env, **fields), ENV, version=version, segments=segments or {})


def rule_flag(when: dict[str, Any], *, segments: dict[str, Segment] | None = None) -> CompiledFlag:
    """A flag serving ``on`` when ``when`` matches, ``off`` by default."""
    return compile_env(
        {"rules": [{"id": "r", "when": when, "serve": {"variation": "on"}}]}, segments=segments
    )


def clause(attribute: str, op: str, *values: Any, ci: bool = False) -> dict[str, Any]:
    Clause.model_validate({"attribute": attribute, "op": op, "values": list(values), "case_insensitive": ci})
    return {"attribute": attribute, "op": op, "values": list(values), "case_insensitive": ci}
