"""Cross-reference validation of flags, environment configurations and segments.

Structural validation (types, key patterns, regexes, weights) is done by the pydantic models of
:mod:`core.model`; what needs the flag, its siblings and the segments together is done here,
against a :class:`~core.state.Catalog`. Every problem is reported (not just the first), each
with a field path relative to what was validated: ``rules[0].serve.rollout[1].variation`` for
an environment configuration, ``environments.production.rules[0]...`` for a whole flag.

Rules enforced:
- every variation named (``off_variation``, targets, rule serves, rollouts, ``default``) exists;
- a context key is targeted at most once in an environment (across all variations), and each
  variation has at most one target list;
- an **enabled** environment must have a ``default`` serve: otherwise a context matching no
  target and no rule would have nothing to be served. A disabled environment may omit it;
- ``in_segment`` clauses name live segments;
- prerequisites name another live flag and one of its variations, at most once per flag, and
  never form a cycle within the environment (the prerequisites of the other flags come from
  the catalog; the flag being validated replaces its catalog entry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pydantic import ValidationError

from core.conditions import condition_segments, iter_clauses
from core.errors import InvalidConfiguration
from core.model import EnvironmentConfig, Flag, Operator, Segment, Serve
from core.state import Catalog

__all__ = [
    "Issue",
    "ensure_valid",
    "issues_from_validation_error",
    "path_from_loc",
    "validate_environment",
    "validate_flag",
    "validate_segment",
]

Issue = dict[str, str]
"""One problem: ``{"path": ..., "message": ...}``."""

_TAGS = {"clause", "all", "any", "not"}
_Check = Callable[[str, str], None]


def ensure_valid(issues: Iterable[Issue], message: str = "invalid configuration") -> None:
    """Raise :class:`InvalidConfiguration` carrying every issue, if there is any."""
    found = list(issues)
    if found:
        raise InvalidConfiguration(f"{message}: {found[0]['path']}: {found[0]['message']}", details=found)


def path_from_loc(loc: Iterable[str | int], prefix: str = "") -> str:
    """A pydantic error location as a field path (``rules[0].when.all[1].op``).

    The discriminator tags pydantic inserts for condition unions (``clause``, and the repeated
    ``all``/``any``/``not``) are dropped.
    """
    path = prefix
    previous: str | int | None = None
    for part in loc:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        elif part == "clause" or (part in _TAGS and part == previous):
            pass
        else:
            path = f"{path}.{part}" if path else str(part)
        previous = part
    return path


def issues_from_validation_error(error: ValidationError, prefix: str = "") -> list[Issue]:
    return [{"path": path_from_loc(e["loc"], prefix), "message": e["msg"]} for e in error.errors()]


def validate_flag(flag: Flag, catalog: Catalog) -> list[Issue]:
    """Every cross-reference problem of a flag, in all its environments."""
    issues: list[Issue] = []
    for env in sorted(flag.environments):
        issues += validate_environment(flag, env, flag.environments[env], catalog,
                                       prefix=f"environments.{env}.")
    return issues


def validate_environment(
    flag: Flag, environment: str, config: EnvironmentConfig, catalog: Catalog, *, prefix: str = ""
) -> list[Issue]:
    """Every cross-reference problem of one environment configuration of ``flag``."""
    known = {v.key for v in flag.variations}
    issues: list[Issue] = []

    def report(path: str, message: str) -> None:
        issues.append({"path": f"{prefix}{path}", "message": message})

    def check_variation(path: str, key: str) -> None:
        if key not in known:
            report(path, f"unknown variation {key!r} (flag {flag.key!r} has: {', '.join(sorted(known))})")

    if config.off_variation is not None:
        check_variation("off_variation", config.off_variation)
    _check_targets(config, check_variation, report)
    for i, rule in enumerate(config.rules):
        _check_serve(rule.serve, f"rules[{i}].serve", check_variation)
        for path, clause in iter_clauses(rule.when, f"rules[{i}].when"):
            if clause.op is Operator.IN_SEGMENT:
                for j, value in enumerate(clause.values):
                    if value not in catalog.segment_keys:
                        report(f"{path}.values[{j}]", f"unknown segment {value!r}")
    if config.default is not None:
        _check_serve(config.default, "default", check_variation)
    elif config.enabled:
        report("default", "a default serve is required when the environment is enabled")
    _check_prerequisites(flag, environment, config, catalog, report)
    return issues


def validate_segment(segment: Segment, catalog: Catalog) -> list[Issue]:
    """``in_segment`` clauses of a segment name other live segments without forming a cycle;
    included and excluded keys do not overlap."""
    issues: list[Issue] = []
    graph: dict[str, frozenset[str]] = dict(catalog.segment_dependencies)
    graph[segment.key] = condition_segments(segment.when)
    for path, clause in iter_clauses(segment.when, "when"):
        if clause.op is not Operator.IN_SEGMENT:
            continue
        for j, value in enumerate(clause.values):
            message = _segment_reference_problem(segment.key, str(value), catalog, graph)
            if message:
                issues.append({"path": f"{path}.values[{j}]", "message": message})
    included = set(segment.included)
    for j, key in enumerate(segment.excluded):
        if key in included:
            issues.append({"path": f"excluded[{j}]", "message": f"context key {key!r} is also included"})
    return issues


def _segment_reference_problem(
    key: str, referenced: str, catalog: Catalog, graph: Mapping[str, frozenset[str]]
) -> str | None:
    if referenced == key:
        return "a segment cannot contain itself"
    if referenced not in catalog.segment_keys:
        return f"unknown segment {referenced!r}"
    cycle = _find_path(graph, referenced, key)
    return None if cycle is None else "segment cycle: " + " -> ".join([key, *cycle])


def _check_targets(config: EnvironmentConfig, check_variation: _Check, report: _Check) -> None:
    seen_keys: dict[str, str] = {}
    seen_variations: set[str] = set()
    for i, target in enumerate(config.targets):
        check_variation(f"targets[{i}].variation", target.variation)
        if target.variation in seen_variations:
            report(f"targets[{i}].variation", f"variation {target.variation!r} has more than one target list")
        seen_variations.add(target.variation)
        for j, value in enumerate(target.values):
            path = f"targets[{i}].values[{j}]"
            if value in seen_keys:
                report(path, f"context key {value!r} is already targeted at {seen_keys[value]}")
            else:
                seen_keys[value] = path


def _check_serve(serve: Serve, path: str, check_variation: _Check) -> None:
    if serve.variation is not None:
        check_variation(f"{path}.variation", serve.variation)
    for k, weighted in enumerate(serve.rollout or ()):
        check_variation(f"{path}.rollout[{k}].variation", weighted.variation)


def _check_prerequisites(
    flag: Flag, environment: str, config: EnvironmentConfig, catalog: Catalog, report: _Check
) -> None:
    graph: dict[str, frozenset[str]] = dict(catalog.prerequisites.get(environment, {}))
    graph[flag.key] = frozenset(p.flag for p in config.prerequisites)
    seen: set[str] = set()
    for i, prerequisite in enumerate(config.prerequisites):
        path = f"prerequisites[{i}]"
        if prerequisite.flag == flag.key:
            report(f"{path}.flag", "a flag cannot be its own prerequisite")
            continue
        if prerequisite.flag in seen:
            report(f"{path}.flag", f"flag {prerequisite.flag!r} is listed more than once")
        seen.add(prerequisite.flag)
        variations = catalog.flag_variations.get(prerequisite.flag)
        if variations is None:
            report(f"{path}.flag", f"unknown flag {prerequisite.flag!r}")
            continue
        if prerequisite.variation not in variations:
            report(f"{path}.variation",
                   f"unknown variation {prerequisite.variation!r} of flag {prerequisite.flag!r}")
        cycle = _find_path(graph, prerequisite.flag, flag.key)
        if cycle is not None:
            report(f"{path}.flag", "prerequisite cycle: " + " -> ".join([flag.key, *cycle]))


def _find_path(graph: Mapping[str, frozenset[str]], start: str, goal: str) -> list[str] | None:
    """A path of prerequisite edges from ``start`` to ``goal`` (depth first, sorted: deterministic)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in visited:
            continue
        visited.add(node)
        for successor in sorted(graph.get(node, frozenset()), reverse=True):
            stack.append((successor, [*path, successor]))
    return None
