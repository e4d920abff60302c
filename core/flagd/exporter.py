"""Flagstream flags of one environment -> a flagd document that flagd evaluates the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.flagd.conditions import FLAG_KEY, logic_from_condition
from core.flagd.errors import FlagdUnsupported
from core.model import Flag, FlagdBucketing, Serve

__all__ = ["FLAGD_SCHEMA", "export_flagd"]

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"


def export_flagd(flags: Iterable[Flag], environment: str) -> dict[str, Any]:
    """Every non-archived flag configured in ``environment``; refuses what flagd cannot express."""
    out: dict[str, Any] = {}
    for flag in flags:
        config = flag.environments.get(environment)
        if flag.archived or config is None:
            continue
        out[flag.key] = _flag(flag, environment)
    return {"$schema": FLAGD_SCHEMA, "flags": out}


def _flag(flag: Flag, environment: str) -> dict[str, Any]:
    path = f"$.flags.{flag.key}"
    config = flag.environments[environment]
    for field, present in (
        ("prerequisites", bool(config.prerequisites)),
        ("schedule", config.schedule is not None),
        ("expires_at", config.expires_at is not None),
    ):
        if present:
            raise FlagdUnsupported(f"{path}.{field}", f"flagd has no {field}")
    variants = {v.key: v.value for v in flag.variations}
    default_serve = config.default
    default_variant = config.off_variation
    if default_serve is not None and default_serve.variation is not None:
        default_variant = default_serve.variation
    if not config.enabled:
        if config.off_variation is None:
            raise FlagdUnsupported(f"{path}.off_variation", "a disabled flag needs an off variation")
        disabled = {"state": "DISABLED", "variants": variants, "defaultVariant": config.off_variation}
        return _with_metadata(disabled, flag)
    if default_variant is None:
        raise FlagdUnsupported(f"{path}.default", "flagd needs a default variant")
    branches = _branches(flag, environment, path)
    rollout = default_serve is not None and default_serve.rollout is not None
    otherwise = _result(default_serve, f"{path}.default", flag.key) if default_serve and rollout else None
    targeting: Any = {}
    if branches:
        targeting = {"if": [*branches, otherwise] if otherwise is not None else branches}
    elif otherwise is not None:
        targeting = otherwise
    answer: dict[str, Any] = {"state": "ENABLED", "variants": variants, "defaultVariant": default_variant}
    if targeting:
        answer["targeting"] = targeting
    return _with_metadata(answer, flag)


def _with_metadata(answer: dict[str, Any], flag: Flag) -> dict[str, Any]:
    return {**answer, "metadata": dict(flag.metadata)} if flag.metadata else answer


def _branches(flag: Flag, environment: str, path: str) -> list[Any]:
    """``[condition, result, ...]`` of an ``if``: individual targets first, then the rules in order."""
    config = flag.environments[environment]
    branches: list[Any] = []
    for target in config.targets:
        branches += [{"in": [{"var": "targetingKey"}, list(target.values)]}, target.variation]
    for i, rule in enumerate(config.rules):
        here = f"{path}.rules[{i}]"
        result = _result(rule.serve, f"{here}.serve", flag.key)
        if rule.when is None:
            branches += [True, result]  # a rule without a condition always matches
            continue
        branches += [logic_from_condition(rule.when, f"{here}.when"), result]
    return branches


def _result(serve: Serve, path: str, flag_key: str) -> Any:
    if serve.rollout is None:
        return serve.variation
    slots = [[slot.variation, slot.weight] for slot in serve.rollout]
    attribute = serve.bucket_by or "targetingKey"
    if serve.flagd_bucketing is FlagdBucketing.TARGETING_KEY:  # the form it was imported from
        return {"fractional": slots}
    if serve.flagd_bucketing is FlagdBucketing.CAT and serve.salt == "":
        return {"fractional": [{"cat": ["", {"var": attribute}]}, *slots]}
    if serve.salt is None:
        bucketing: Any = {"cat": [{"var": FLAG_KEY}, {"var": attribute}]}
    elif serve.salt == "":
        bucketing = {"var": attribute}
    else:
        bucketing = {"cat": [serve.salt, {"var": attribute}]}
    return {"fractional": [bucketing, *slots]}
