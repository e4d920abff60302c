"""Walking condition trees: every clause with its field path, and the segments a flag references."""

from __future__ import annotations

from collections.abc import Iterator

from core.model import AllOf, AnyOf, Clause, Condition, Flag, NotOf, Operator

__all__ = ["condition_segments", "iter_clauses", "segment_references"]


def iter_clauses(condition: Condition | None, path: str = "") -> Iterator[tuple[str, Clause]]:
    """Every clause of a condition tree, with its field path (``all[0].any[1]``...)."""
    prefix = f"{path}." if path else ""
    if isinstance(condition, Clause):
        yield path, condition
    elif isinstance(condition, AllOf | AnyOf):
        name, children = ("all", condition.all) if isinstance(condition, AllOf) else ("any", condition.any)
        for i, child in enumerate(children):
            yield from iter_clauses(child, f"{prefix}{name}[{i}]")
    elif isinstance(condition, NotOf):
        yield from iter_clauses(condition.not_, f"{prefix}not")


def condition_segments(condition: Condition | None) -> frozenset[str]:
    """The segment keys named by ``in_segment`` clauses of one condition tree."""
    return frozenset(
        str(value)
        for _, clause in iter_clauses(condition)
        if clause.op is Operator.IN_SEGMENT
        for value in clause.values
    )


def segment_references(flag: Flag) -> frozenset[str]:
    """The segment keys named by ``in_segment`` clauses in any rule of any environment."""
    rules = [rule for config in flag.environments.values() for rule in config.rules]
    return frozenset(key for rule in rules for key in condition_segments(rule.when))
