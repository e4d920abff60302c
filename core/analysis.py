"""Static analysis of an environment's rules: warnings a valid configuration may still deserve.

Pure (no I/O, no clock). :func:`analyze_environment` returns warnings, each with a field path and
a stable code, and a complexity score:

- ``rule_unreachable``: a rule no context can reach — it follows a rule without a condition
  (which matches everyone), or its own condition is a contradiction (``x eq a`` and ``x eq b``,
  ``exists`` and ``not_exists`` of one attribute, disjoint ``in`` lists in one ``all``);
- ``rule_shadowed``: an earlier rule matches every context this rule matches (its conjunction of
  clauses is implied by this rule's), so this one never decides anything;
- ``rollout_single_variation``: a rollout whose whole weight is on one variation (a plain serve
  says the same, and more clearly).

The analysis is sound but not complete: a warning is always true; some dead rules (e.g. behind an
``any`` that covers them in a roundabout way) are not found.

Complexity score: 1 per clause and per ``all``/``any``/``not`` node, +2 per ``matches`` or
``in_segment`` clause (a regex or a nested condition), +1 per 10 values of a clause beyond the
first 10, +1 per rollout, per target list and per prerequisite. It grows with what a person must
read to predict the result; the console shows it next to the rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.model import AllOf, AnyOf, Clause, Condition, EnvironmentConfig, NotOf, Operator, Serve

__all__ = ["Analysis", "RuleWarning", "analyze_environment", "complexity_of", "condition_complexity"]


@dataclass(frozen=True, slots=True)
class RuleWarning:
    path: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Analysis:
    warnings: list[RuleWarning] = field(default_factory=list)
    complexity: int = 0


def analyze_environment(config: EnvironmentConfig) -> Analysis:
    """Warnings (shadowed/unreachable rules, single-variation rollouts) and the complexity score."""
    warnings: list[RuleWarning] = []
    earlier: list[tuple[int, tuple[Clause, ...] | None]] = []  # (index, conjunction) of reachable rules
    catch_all: int | None = None
    for i, rule in enumerate(config.rules):
        path = f"rules[{i}]"
        conjunction = _conjunction(rule.when)
        if catch_all is not None:
            warnings.append(
                RuleWarning(
                    path,
                    "rule_unreachable",
                    f"rule {rule.id!r} follows rule {config.rules[catch_all].id!r}, "
                    "which has no condition and matches every context",
                )
            )
        elif _contradicts(rule.when):
            warnings.append(
                RuleWarning(
                    f"{path}.when",
                    "rule_unreachable",
                    f"rule {rule.id!r} has a condition no context can satisfy",
                )
            )
        else:
            shadow = _shadowing_rule(conjunction, earlier)
            if shadow is not None:
                warnings.append(
                    RuleWarning(
                        path,
                        "rule_shadowed",
                        f"rule {rule.id!r} is shadowed by rule {config.rules[shadow].id!r}: "
                        "that earlier rule matches every context this one matches",
                    )
                )
            earlier.append((i, conjunction))
        if rule.when is None and catch_all is None:
            catch_all = i
        warnings.extend(_rollout_warnings(rule.serve, f"{path}.serve"))
    if config.default is not None:
        warnings.extend(_rollout_warnings(config.default, "default"))
    return Analysis(warnings=warnings, complexity=complexity_of(config))


def complexity_of(config: EnvironmentConfig) -> int:
    """The configuration's complexity score (see the module docstring)."""
    score = len(config.targets) + len(config.prerequisites)
    for rule in config.rules:
        score += condition_complexity(rule.when)
        score += 1 if rule.serve.rollout else 0
    if config.default is not None and config.default.rollout:
        score += 1
    return score


def condition_complexity(condition: Condition | None) -> int:
    """The complexity score of one condition tree (0 for no condition)."""
    if condition is None:
        return 0
    if isinstance(condition, Clause):
        extra = 2 if condition.op in (Operator.MATCHES, Operator.IN_SEGMENT) else 0
        return 1 + extra + max(0, len(condition.values) - 1) // 10
    return 1 + sum(condition_complexity(child) for child in _children(condition))


def _children(condition: AllOf | AnyOf | NotOf) -> tuple[Condition, ...]:
    if isinstance(condition, AllOf):
        return condition.all
    if isinstance(condition, AnyOf):
        return condition.any
    return (condition.not_,)


def _rollout_warnings(serve: Serve, path: str) -> Iterator[RuleWarning]:
    if not serve.rollout:
        return
    weighted = [w for w in serve.rollout if w.weight > 0]
    if len(weighted) == 1:
        yield RuleWarning(
            f"{path}.rollout",
            "rollout_single_variation",
            f"the whole rollout is on variation {weighted[0].variation!r}: "
            "serve it directly, or spread the weights",
        )


def _conjunction(condition: Condition | None) -> tuple[Clause, ...] | None:
    """The clauses of a condition that is a plain AND of clauses (``None`` otherwise); empty = always."""
    if condition is None:
        return ()
    if isinstance(condition, Clause):
        return (condition,)  # clauses may hold lists/objects (unhashable): a tuple, not a set
    if isinstance(condition, AllOf):
        clauses: list[Clause] = []
        for child in condition.all:
            inner = _conjunction(child)
            if inner is None:
                return None
            clauses.extend(inner)
        return tuple(clauses)
    return None


def _shadowing_rule(
    conjunction: tuple[Clause, ...] | None, earlier: list[tuple[int, tuple[Clause, ...] | None]]
) -> int | None:
    """The first earlier rule whose every clause is implied by one of this rule's clauses."""
    if conjunction is None:
        return None
    for index, previous in earlier:
        if previous is None or not previous:
            continue  # an unanalysable rule, or a catch-all (reported as making the rest unreachable)
        if all(any(_implies(mine, theirs) for mine in conjunction) for theirs in previous):
            return index
    return None


def _implies(stronger: Clause, weaker: Clause) -> bool:
    """Whether every context satisfying ``stronger`` satisfies ``weaker`` (conservative)."""
    if stronger == weaker:
        return True
    if stronger.attribute != weaker.attribute or stronger.case_insensitive != weaker.case_insensitive:
        return False
    values = _value_set(stronger)
    if weaker.op is Operator.IN and stronger.op in (Operator.IN, Operator.EQ) and values is not None:
        wider = _value_set(weaker)
        return wider is not None and values <= wider
    if weaker.op is Operator.EXISTS:
        return stronger.op not in (Operator.NOT_EXISTS, Operator.NEQ, Operator.NOT_IN, Operator.NOT_CONTAINS)
    return False


def _value_set(clause: Clause) -> frozenset[object] | None:
    """An ``eq``/``in`` clause's values (both mean "any of") as a set; ``None`` if one is a list/object."""
    keys: set[object] = set()
    for value in clause.values:
        if isinstance(value, dict | list):
            return None
        keys.add((type(value).__name__, value))
    return frozenset(keys)


def _contradicts(condition: Condition | None) -> bool:
    """Whether an AND of clauses (at the top, or nested ``all``) can never hold."""
    clauses = _conjunction(condition)
    if not clauses:
        return False
    by_attribute: dict[str, list[Clause]] = {}
    for clause in clauses:
        by_attribute.setdefault(clause.attribute, []).append(clause)
    return any(_clauses_conflict(group) for group in by_attribute.values())


def _clauses_conflict(clauses: list[Clause]) -> bool:
    ops = {c.op for c in clauses}
    if Operator.NOT_EXISTS in ops and ops - {Operator.NOT_EXISTS, Operator.NOT_IN, Operator.NEQ}:
        return True
    allowed: frozenset[object] | None = None
    for clause in clauses:
        if clause.op not in (Operator.EQ, Operator.IN) or clause.case_insensitive:
            continue
        values = _value_set(clause)
        if values is None:
            continue
        allowed = values if allowed is None else allowed & values
        if not allowed:
            return True
    return False
