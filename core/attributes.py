"""Which context attributes exist: from rules (names, types, example values) and from contexts (types only).

Pure. Rules and segments are configuration, so their values are safe to show as examples. A
context is a person's data: :func:`context_attribute_types` keeps only attribute *names* and the
JSON *type* of each value, never a value — the API stores nothing else from evaluated contexts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.conditions import iter_clauses
from core.model import Condition, Flag, Operator, Segment

__all__ = [
    "MAX_EXAMPLES",
    "AttributeInfo",
    "ContextTypeAggregate",
    "attributes_from_rules",
    "context_attribute_types",
    "merge_context_types",
    "type_of_value",
]

MAX_EXAMPLES = 5
_MAX_DEPTH = 4
_MAX_NAME = 256

_OPERATOR_TYPES: dict[Operator, str] = {
    Operator.LT: "number",
    Operator.LTE: "number",
    Operator.GT: "number",
    Operator.GTE: "number",
    Operator.BETWEEN: "number",
    Operator.BEFORE: "datetime",
    Operator.AFTER: "datetime",
    Operator.BETWEEN_DATES: "datetime",
    Operator.SEMVER_EQ: "semver",
    Operator.SEMVER_LT: "semver",
    Operator.SEMVER_GT: "semver",
    Operator.CONTAINS_ANY: "array",
    Operator.CONTAINS_ALL: "array",
    Operator.STARTS_WITH: "string",
    Operator.ENDS_WITH: "string",
    Operator.MATCHES: "string",
}


@dataclass
class AttributeInfo:
    name: str
    types: set[str] = field(default_factory=set)
    operators: set[str] = field(default_factory=set)
    examples: list[Any] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)  # "rules" and/or "contexts"
    used_by: set[str] = field(default_factory=set)  # flag keys and "segment:<key>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "types": sorted(self.types),
            "operators": sorted(self.operators),
            "examples": list(self.examples),
            "sources": sorted(self.sources),
            "used_by": sorted(self.used_by),
        }


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
    list: "array",
    tuple: "array",
    dict: "object",
}


def type_of_value(value: Any) -> str:
    """The JSON type name of a value: string, number, boolean, array, object or null."""
    known = _TYPE_NAMES.get(type(value))  # the exact JSON types at the cost of one lookup
    if known is not None:  # bool cannot be subclassed: every boolean is found here
        return known
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def attributes_from_rules(flags: Iterable[Flag], segments: Iterable[Segment]) -> dict[str, AttributeInfo]:
    """Every attribute a rule or segment tests, with types inferred from operators and values."""
    found: dict[str, AttributeInfo] = {}
    for flag in flags:
        for config in flag.environments.values():
            for rule in config.rules:
                _collect(found, rule.when, flag.key)
    for segment in segments:
        _collect(found, segment.when, f"segment:{segment.key}")
    return found


def _collect(found: dict[str, AttributeInfo], condition: Condition | None, user: str) -> None:
    for _, clause in iter_clauses(condition):
        if clause.op is Operator.IN_SEGMENT:
            continue
        info = found.setdefault(clause.attribute, AttributeInfo(clause.attribute))
        info.sources.add("rules")
        info.operators.add(clause.op.value)
        info.used_by.add(user)
        inferred = _OPERATOR_TYPES.get(clause.op)
        if inferred is not None:
            info.types.add(inferred)
        elif clause.values and clause.op not in (Operator.EXISTS, Operator.NOT_EXISTS):
            info.types.update(type_of_value(v) for v in clause.values)
        for value in clause.values:
            if len(info.examples) >= MAX_EXAMPLES:
                break
            if value not in info.examples and not isinstance(value, dict | list):
                info.examples.append(value)


def context_attribute_types(context: Mapping[str, Any]) -> dict[str, str]:
    """Attribute name (dotted for nested objects) → JSON type; never a value."""
    types: dict[str, str] = {}
    _walk(context, "", 0, types)
    return types


def _walk(mapping: Mapping[str, Any], prefix: str, depth: int, types: dict[str, str]) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str):
            continue
        name = prefix + key if prefix else key
        if len(name) > _MAX_NAME:
            continue
        kind = _TYPE_NAMES.get(type(value))
        if kind is None or kind == "object":
            if depth < _MAX_DEPTH and isinstance(value, Mapping):
                _walk(value, name + ".", depth + 1, types)
                continue
            kind = type_of_value(value)
        types[name] = kind


def merge_context_types(
    found: dict[str, AttributeInfo], seen: Mapping[str, Iterable[str]]
) -> dict[str, AttributeInfo]:
    """``found`` (from rules) with the names and types seen in contexts added (no examples)."""
    for name, types in seen.items():
        info = found.setdefault(name, AttributeInfo(name))
        info.sources.add("contexts")
        info.types.update(types)
    return found


class ContextTypeAggregate:
    """A bounded, in-memory set of attribute name → JSON types seen in contexts, and what is new.

    For sampling evaluated contexts in a process: :meth:`add` walks one context (names and types
    only, like :func:`context_attribute_types`), remembers at most ``max_names`` names, and keeps
    what was not known before as *pending* until :meth:`take_pending` hands it over to be stored.
    A name or type already known costs a set lookup and is not pending again.
    """

    def __init__(self, max_names: int) -> None:
        self._max = max_names
        self._known: dict[str, set[str]] = {}
        self._pending: dict[str, set[str]] = {}

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def add(self, context: Mapping[str, Any]) -> None:
        """Remember ``context``'s attribute names and value types (never a value)."""
        self.add_types(context_attribute_types(context).items())

    def add_types(self, seen: Iterable[tuple[str, str]]) -> None:
        """Remember ``(name, type)`` pairs; a new name beyond ``max_names`` is dropped."""
        for name, kind in seen:
            kinds = self._known.get(name)
            if kinds is None:
                if len(self._known) >= self._max:
                    continue
                kinds = self._known[name] = set()
            if kind not in kinds:
                kinds.add(kind)
                self._pending.setdefault(name, set()).add(kind)

    def take_pending(self) -> dict[str, set[str]]:
        """What is new since the last call (name → types); empty afterwards."""
        pending, self._pending = self._pending, {}
        return pending

    def give_back(self, pending: Mapping[str, Iterable[str]]) -> None:
        """Mark ``pending`` as not stored after all (a failed flush): it is pending again."""
        for name, kinds in pending.items():
            self._pending.setdefault(name, set()).update(kinds)
