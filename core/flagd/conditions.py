"""flagd targeting conditions (JsonLogic) <-> Flagstream conditions, exactly or not at all.

Import: ``and``/``or``/``!``, ``==``/``===``/``!=``/``!==``, ``<``/``<=``/``>``/``>=`` (numbers, or
``$flagd.timestamp`` against epoch seconds), ``in`` (list membership or substring), ``starts_with``,
``ends_with``, ``sem_ver`` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), ``var`` (a context path; a
default value is refused), ``$ref`` to ``$evaluators``. Anything else raises :class:`FlagdUnsupported`
with the JSON path of the construct.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from core.evaluation.temporal import NOW_ATTRIBUTE
from core.flagd.errors import FlagdUnsupported
from core.model import AllOf, AnyOf, Clause, Condition, NotOf, Operator

__all__ = ["TIMESTAMP", "condition_from_logic", "logic_from_condition"]

TIMESTAMP = "$flagd.timestamp"
FLAG_KEY = "$flagd.flagKey"

_COMPARE = {"<": Operator.LT, "<=": Operator.LTE, ">": Operator.GT, ">=": Operator.GTE}
_EQUALS = {"==": False, "===": False, "!=": True, "!==": True}  # operator -> negated
_SEMVER: dict[str, tuple[Operator, bool]] = {
    "=": (Operator.SEMVER_EQ, False),
    "!=": (Operator.SEMVER_EQ, True),
    "<": (Operator.SEMVER_LT, False),
    ">=": (Operator.SEMVER_LT, True),
    ">": (Operator.SEMVER_GT, False),
    "<=": (Operator.SEMVER_GT, True),
}


def condition_from_logic(logic: Any, path: str, evaluators: Mapping[str, Any]) -> Condition:
    """The Flagstream condition equivalent to the JsonLogic boolean expression ``logic``."""
    if not isinstance(logic, dict) or len(logic) != 1:
        raise FlagdUnsupported(path, "a condition must be a JsonLogic object with one operator")
    ((op, args),) = logic.items()
    here = f"{path}.{op}" if op.isidentifier() else f"{path}['{op}']"
    if op == "$ref":
        if not isinstance(args, str) or args not in evaluators:
            raise FlagdUnsupported(here, f"unknown evaluator {args!r} (not in $evaluators)")
        return condition_from_logic(evaluators[args], f"$['$evaluators'].{args}", evaluators)
    if op in ("and", "or"):
        if not isinstance(args, list) or not args:
            raise FlagdUnsupported(here, f"{op} needs a non-empty list")
        parts = tuple(condition_from_logic(a, f"{here}[{i}]", evaluators) for i, a in enumerate(args))
        return AllOf(all=parts) if op == "and" else AnyOf(any=parts)
    if op == "!":
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        return NotOf.model_validate({"not": condition_from_logic(inner, f"{here}[0]", evaluators)})
    items = args if isinstance(args, list) else [args]
    if op in _EQUALS:
        return _negate(_clause(items, here, Operator.EQ), _EQUALS[op])
    if op in _COMPARE:
        return _compare(items, here, op)
    if op == "in":
        return _in(items, here)
    if op in ("starts_with", "ends_with"):
        return _clause(items, here, Operator(op))
    if op == "sem_ver":
        return _sem_ver(items, here)
    raise FlagdUnsupported(here, f"the JsonLogic operator {op!r} has no Flagstream equivalent")


def _attribute(value: Any, path: str) -> str | None:
    if not isinstance(value, dict) or set(value) != {"var"}:
        return None
    name = value["var"]
    if isinstance(name, list):
        if len(name) != 1:
            raise FlagdUnsupported(f"{path}.var", "a var with a default value cannot be expressed")
        name = name[0]
    if not isinstance(name, str) or not name:
        raise FlagdUnsupported(f"{path}.var", "var needs a context attribute name")
    if name == FLAG_KEY:
        raise FlagdUnsupported(f"{path}.var", "$flagd.flagKey is only supported inside fractional")
    return name


def _literal(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        raise FlagdUnsupported(path, "only a literal may be compared with a context attribute here")
    return value


def _clause(items: list[Any], path: str, op: Operator) -> Clause:
    if len(items) != 2:
        raise FlagdUnsupported(path, 'expected [{"var": ...}, literal]')
    attribute = _attribute(items[0], f"{path}[0]")
    if attribute is None or attribute == TIMESTAMP:
        raise FlagdUnsupported(f"{path}[0]", 'the first operand must be a context attribute ({"var": ...})')
    try:
        return Clause(attribute=attribute, op=op, values=(_literal(items[1], f"{path}[1]"),))
    except ValidationError as e:
        raise FlagdUnsupported(f"{path}[1]", e.errors()[0]["msg"]) from e


def _negate(condition: Condition, negated: bool) -> Condition:
    return NotOf.model_validate({"not": condition}) if negated else condition


def _compare(items: list[Any], path: str, op: str) -> Condition:
    if len(items) != 2:
        raise FlagdUnsupported(path, "only two-operand comparisons are supported")
    if _attribute(items[0], f"{path}[0]") == TIMESTAMP:
        return _timestamp(items[1], f"{path}[1]", op)
    clause = _clause(items, path, _COMPARE[op])
    if isinstance(clause.values[0], bool) or not isinstance(clause.values[0], int | float):
        raise FlagdUnsupported(f"{path}[1]", "comparisons are supported against numbers only")
    return clause


def _timestamp(value: Any, path: str, op: str) -> Condition:
    """flagd's ``$flagd.timestamp`` is whole Unix seconds (``floor(now)``): ``floor(now) > t`` is
    ``now >= t + 1`` and ``floor(now) <= t`` is ``now < t + 1``, so each maps exactly onto ``before``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FlagdUnsupported(path, "$flagd.timestamp is compared with whole Unix seconds")
    bound = value + 1 if op in (">", "<=") else value
    before = Clause(attribute=NOW_ATTRIBUTE, op=Operator.BEFORE, values=(_instant(bound),))
    return _negate(before, op in (">", ">="))


def _instant(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _in(items: list[Any], path: str) -> Clause:
    if len(items) != 2:
        raise FlagdUnsupported(path, "in takes two operands")
    attribute = _attribute(items[0], f"{path}[0]")
    if attribute is not None and isinstance(items[1], list):
        values = tuple(_literal(v, f"{path}[1][{i}]") for i, v in enumerate(items[1]))
        if not values:
            raise FlagdUnsupported(f"{path}[1]", "an empty list never matches; remove the branch")
        return Clause(attribute=attribute, op=Operator.IN, values=values)
    container = _attribute(items[1], f"{path}[1]")
    if container is not None and isinstance(items[0], str):
        return Clause(attribute=container, op=Operator.CONTAINS, values=(items[0],))
    raise FlagdUnsupported(path, 'in: expected [{"var": ...}, [literals]] or ["text", {"var": ...}]')


def _sem_ver(items: list[Any], path: str) -> Condition:
    if len(items) != 3 or not isinstance(items[1], str) or not isinstance(items[2], str):
        raise FlagdUnsupported(path, 'sem_ver: expected [{"var": ...}, operator, "version"]')
    if items[1] not in _SEMVER:
        raise FlagdUnsupported(f"{path}[1]", f"sem_ver operator {items[1]!r} (^ and ~) is not supported")
    op, negated = _SEMVER[items[1]]
    return _negate(_clause([items[0], items[2]], path, op), negated)


def logic_from_condition(condition: Condition, path: str) -> Any:
    """The JsonLogic flagd evaluates the way Flagstream evaluates ``condition``."""
    if isinstance(condition, AllOf):
        return {"and": [logic_from_condition(c, f"{path}.all[{i}]") for i, c in enumerate(condition.all)]}
    if isinstance(condition, AnyOf):
        return {"or": [logic_from_condition(c, f"{path}.any[{i}]") for i, c in enumerate(condition.any)]}
    if isinstance(condition, NotOf):
        return {"!": logic_from_condition(condition.not_, f"{path}.not")}
    return _logic_of_clause(condition, path)


def _logic_of_clause(clause: Clause, path: str) -> Any:
    if clause.case_insensitive:
        raise FlagdUnsupported(f"{path}.case_insensitive", "flagd has no case-insensitive comparison")
    var = {"var": clause.attribute}
    values = list(clause.values)
    op = clause.op
    if clause.attribute == NOW_ATTRIBUTE and op is Operator.BEFORE:
        seconds = datetime.fromisoformat(str(values[0])).timestamp()
        if not float(seconds).is_integer():
            raise FlagdUnsupported(f"{path}.values[0]", "flagd timestamps are whole seconds")
        return {"<": [{"var": TIMESTAMP}, int(seconds)]}
    if op is Operator.IN:
        return {"in": [var, values]}
    if op is Operator.EQ or op is Operator.NEQ:
        parts = [{"===" if op is Operator.EQ else "!==": [var, v]} for v in values]
        return _join(parts, "or" if op is Operator.EQ else "and")
    if op is Operator.CONTAINS and all(isinstance(v, str) for v in values):
        return _join([{"in": [v, var]} for v in values], "or")
    if op in (Operator.STARTS_WITH, Operator.ENDS_WITH):
        return _join([{op.value: [var, v]} for v in values], "or")
    if op in (Operator.LT, Operator.LTE, Operator.GT, Operator.GTE):
        symbol = {Operator.LT: "<", Operator.LTE: "<=", Operator.GT: ">", Operator.GTE: ">="}[op]
        return {symbol: [var, values[0]]}
    if op in (Operator.SEMVER_EQ, Operator.SEMVER_LT, Operator.SEMVER_GT):
        symbol = {Operator.SEMVER_EQ: "=", Operator.SEMVER_LT: "<", Operator.SEMVER_GT: ">"}[op]
        return {"sem_ver": [var, symbol, values[0]]}
    raise FlagdUnsupported(f"{path}.op", f"operator {op.value!r} cannot be expressed in flagd targeting")


def _join(parts: list[Any], op: str) -> Any:
    return parts[0] if len(parts) == 1 else {op: parts}
