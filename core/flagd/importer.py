"""flagd flag definitions -> Flagstream flags of one environment (exact translations only).

A flag: ``state`` (``ENABLED``/``DISABLED``), ``variants``, ``defaultVariant``, ``targeting``
(``{}``/absent, a ``fractional``, or an ``if`` chain whose branches serve a variant name or a
``fractional`` and whose last ``else`` may be another ``if``, a variant, a ``fractional`` or ``null``).
The kind is inferred from the variant values (all booleans, all strings, all numbers, else JSON).
``metadata``: the document's metadata merged under each flag's (the flag's keys win, as flagd merges
them), kept as the flag's metadata (strings, numbers, booleans; see :data:`core.model.FlagMetadata`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from core.flagd.conditions import FLAG_KEY, condition_from_logic
from core.flagd.errors import FlagdUnsupported
from core.model import EnvironmentConfig, Flag, FlagKind, FlagMetadata, Rule, Serve

__all__ = ["import_flagd", "parse_flagd"]

_METADATA: TypeAdapter[dict[str, Any]] = TypeAdapter(FlagMetadata)
_KNOWN_FLAG_FIELDS = {"state", "variants", "defaultVariant", "targeting", "metadata"}


def parse_flagd(text: str | bytes) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise FlagdUnsupported("$", f"not valid JSON: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("flags"), dict):
        raise FlagdUnsupported("$.flags", "a flagd document is an object with a 'flags' object")
    return document


def import_flagd(document: Mapping[str, Any], environment: str) -> list[Flag]:
    """Every flag of ``document`` as a Flagstream flag configured in ``environment`` only."""
    shared = _metadata(document.get("metadata"), "$.metadata")
    evaluators = document.get("$evaluators", {})
    if not isinstance(evaluators, dict):
        raise FlagdUnsupported("$['$evaluators']", "must be an object")
    return [_flag(key, spec, environment, evaluators, shared) for key, spec in document["flags"].items()]


def _metadata(metadata: Any, path: str) -> dict[str, Any]:
    """``metadata`` checked as Flagstream flag metadata, or refused at the path of the offending entry."""
    if metadata is None:
        return {}
    try:
        return dict(_METADATA.validate_python(metadata))
    except ValidationError as e:
        error = e.errors()[0]
        where = [str(part) for part in error["loc"] if part != "[key]"]
        here = path + "".join(f"['{part}']" for part in where)
        raise FlagdUnsupported(here, f"not valid flag metadata: {error['msg']}") from e


def _flag(
    key: str, spec: Any, environment: str, evaluators: Mapping[str, Any], shared: Mapping[str, Any]
) -> Flag:
    path = f"$.flags.{key}" if key.replace("-", "_").isidentifier() else f"$.flags['{key}']"
    if not isinstance(spec, dict):
        raise FlagdUnsupported(path, "a flag definition is an object")
    unknown = sorted(set(spec) - _KNOWN_FLAG_FIELDS)
    if unknown:
        raise FlagdUnsupported(f"{path}.{unknown[0]}", "unknown flag field")
    metadata = {**shared, **_metadata(spec.get("metadata"), f"{path}.metadata")}
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise FlagdUnsupported(f"{path}.variants", "a flag needs at least one variant")
    default = spec.get("defaultVariant")
    if default not in variants:
        raise FlagdUnsupported(f"{path}.defaultVariant", f"{default!r} is not one of the variants")
    state = spec.get("state", "ENABLED")
    if state not in ("ENABLED", "DISABLED"):
        raise FlagdUnsupported(f"{path}.state", "state is ENABLED or DISABLED")
    rules, default_serve = _targeting(
        spec.get("targeting"), f"{path}.targeting", key, set(variants), evaluators
    )
    config = {
        "enabled": state == "ENABLED",
        "off_variation": default,
        "rules": rules,
        "default": default_serve or {"variation": default},
    }
    try:
        return Flag.model_validate(
            {
                "key": key,
                "kind": _kind_of(list(variants.values())),
                "variations": [{"key": name, "value": value} for name, value in variants.items()],
                "environments": {environment: EnvironmentConfig.model_validate(config)},
                "metadata": metadata,
            }
        )
    except ValidationError as e:
        raise FlagdUnsupported(path, f"not a valid Flagstream flag: {e.errors()[0]['msg']}") from e


def _kind_of(values: list[Any]) -> FlagKind:
    if all(isinstance(v, bool) for v in values):
        return FlagKind.BOOLEAN
    if all(isinstance(v, str) for v in values):
        return FlagKind.STRING
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return FlagKind.NUMBER
    return FlagKind.JSON


def _targeting(
    targeting: Any, path: str, key: str, variants: set[str], evaluators: Mapping[str, Any]
) -> tuple[list[Rule], dict[str, Any] | None]:
    """The rules and the default serve (``None``: the default variant) of a flag's targeting."""
    if targeting is None or targeting == {}:
        return [], None
    rules: list[Rule] = []
    while isinstance(targeting, dict) and set(targeting) == {"if"}:
        branches = targeting["if"]
        here = f"{path}.if"
        if not isinstance(branches, list) or len(branches) < 2:
            raise FlagdUnsupported(here, "if needs [condition, result, ...]")
        for i in range(0, len(branches) - 1, 2):
            when = (
                None if branches[i] is True else condition_from_logic(branches[i], f"{here}[{i}]", evaluators)
            )
            serve = _serve(branches[i + 1], f"{here}[{i + 1}]", key, variants)
            if serve is None:
                raise FlagdUnsupported(f"{here}[{i + 1}]", "a branch must serve a variant")
            rules.append(Rule(id=f"flagd-{len(rules) + 1}", when=when, serve=Serve.model_validate(serve)))
        if len(branches) % 2 == 0:
            return rules, None
        targeting, path = branches[-1], f"{here}[{len(branches) - 1}]"
    return rules, _serve(targeting, path, key, variants)


def _serve(result: Any, path: str, key: str, variants: set[str]) -> dict[str, Any] | None:
    if result is None:
        return None  # flagd falls back to the default variant
    if isinstance(result, str):
        if result not in variants:
            raise FlagdUnsupported(path, f"{result!r} is not one of the variants")
        return {"variation": result}
    if isinstance(result, dict) and set(result) == {"fractional"}:
        return _fractional(result["fractional"], f"{path}.fractional", key, variants)
    raise FlagdUnsupported(path, "a targeting result must be a variant name, a fractional, an if, or null")


def _fractional(args: Any, path: str, key: str, variants: set[str]) -> dict[str, Any]:
    if not isinstance(args, list) or not args:
        raise FlagdUnsupported(path, "fractional needs a list of [variant, weight]")
    serve: dict[str, Any] = {"flagd_bucketing": "targeting_key"}
    if not isinstance(args[0], list):
        serve = _bucketing(args[0], f"{path}[0]")
        args, offset = args[1:], 1
    else:
        offset = 0
    rollout = []
    for i, slot in enumerate(args):
        here = f"{path}[{i + offset}]"
        if not isinstance(slot, list) or not 1 <= len(slot) <= 2 or slot[0] not in variants:
            raise FlagdUnsupported(here, "expected [variant, weight] with a known variant")
        weight = slot[1] if len(slot) == 2 else 1
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise FlagdUnsupported(f"{here}[1]", "weights are non-negative integers")
        rollout.append({"variation": slot[0], "weight": weight})
    if sum(s["weight"] for s in rollout) <= 0:
        raise FlagdUnsupported(path, "the weights must sum to more than 0")
    serve["rollout"] = rollout
    return serve


def _bucketing(expression: Any, path: str) -> dict[str, Any]:
    """flagd hashes the bucketing string (default: flag key + targetingKey); Flagstream hashes
    ``salt + value`` (salt defaults to the flag key), and ``flagd_bucketing`` keeps flagd's reading of
    the value (types, a missing value, ``cat``'s number text, trimming): core.evaluation.flagd_bucketing."""
    if isinstance(expression, dict) and set(expression) == {"var"} and _is_attribute(expression["var"]):
        return {"bucket_by": expression["var"], "salt": "", "flagd_bucketing": "var"}
    if isinstance(expression, dict) and set(expression) == {"cat"} and isinstance(expression["cat"], list):
        parts = expression["cat"]
        if len(parts) == 2 and isinstance(parts[1], dict) and set(parts[1]) == {"var"}:
            attribute, prefix = parts[1]["var"], parts[0]
            if not _is_attribute(attribute):
                raise FlagdUnsupported(f"{path}.cat[1]", "the bucketing value must be a context attribute")
            if prefix == {"var": FLAG_KEY}:  # flagd's default bucketing, spelt out
                return {"bucket_by": attribute, "flagd_bucketing": "cat"}
            if isinstance(prefix, str):
                return {"bucket_by": attribute, "salt": prefix, "flagd_bucketing": "cat"}
    raise FlagdUnsupported(path, 'bucketing by {"var": x} or {"cat": [prefix, {"var": x}]} only')


def _is_attribute(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and not name.startswith("$flagd.")
