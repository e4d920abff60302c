"""What the console's change handlers share: run a command as the signed-in principal, turn a domain error
into field issues or a "changed by X meanwhile" conflict, and preview an unsaved configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from api.console.session import Session
from api.deps import Services
from core.analysis import analyze_environment
from core.commands import Command
from core.conditions import iter_clauses
from core.errors import DomainError, VersionConflict
from core.evaluation import CompiledEnvironment
from core.model import EnvironmentConfig, Flag, Segment
from core.state import Catalog
from core.validation import issues_from_validation_error, validate_environment
from events.audit.history import AuditFilters, PostgresAuditLog
from events.commands.service import CommandMeta

__all__ = ["attributes_of", "conflict_of", "execute_command", "parse_config", "preview_contexts"]

MAX_PREVIEW_CONTEXTS = 1000


async def execute_command(
    request: Request, services: Services, session: Session, command: Command, *, wait_env: str | None = None
) -> dict[str, Any] | None:
    """Run ``command`` as the session's principal; ``None`` when accepted, else what went wrong."""
    correlation = getattr(request.state, "request_id", None)
    meta = CommandMeta(actor=session.principal.name, correlation_id=correlation)
    try:
        outcome = await services.execute(command, meta)
    except VersionConflict as e:
        flag_key = str(getattr(command, "flag_key", ""))
        return {
            "status": 409,
            "code": e.code,
            "message": str(e),
            "issues": list(e.details),
            "conflict": await conflict_of(services, flag_key, e.expected_version),
        }
    except DomainError as e:
        return {"status": e.http_status, "code": e.code, "message": str(e), "issues": list(e.details)}
    if outcome.events:  # the page that follows reads the read model: show the change, not the past
        await services.wait_projected(outcome.stream, outcome.version, wait_env)
    request.state.console_version = outcome.version
    return None


async def conflict_of(services: Services, flag_key: str, seen_version: int) -> dict[str, Any]:
    """Who changed the flag after ``seen_version``, and the newer state to review."""
    page = await services.read_postgres(
        PostgresAuditLog(services.pool).history,
        flag_key,
        AuditFilters(),
        after_version=seen_version,
        limit=50,
    )
    changes = [
        {
            "version": e.version,
            "actor": e.actor,
            "reason": e.reason,
            "type": e.type,
            "occurred_at": e.occurred_at.isoformat(),
            "environment": e.environment,
            "diff": [c.model_dump(mode="json") for c in e.diff],
        }
        for e in page.entries
    ]
    latest = changes[-1] if changes else None
    return {
        "by": sorted({c["actor"] for c in changes}),
        "version": latest["version"] if latest else None,
        "changes": changes,
    }


def parse_config(raw: Any) -> tuple[EnvironmentConfig | None, list[dict[str, str]]]:
    try:
        return EnvironmentConfig.model_validate(raw), []
    except ValidationError as e:
        return None, issues_from_validation_error(e)


def attributes_of(flag: Flag, segments: Mapping[str, Segment]) -> list[str]:
    """Attribute names used by the flag's rules (every environment) and by segments: autocomplete hints."""
    names = {"targetingKey"}
    for config in flag.environments.values():
        for i, rule in enumerate(config.rules):
            names.update(c.attribute for _, c in iter_clauses(rule.when, f"rules[{i}].when"))
    for segment in segments.values():
        names.update(c.attribute for _, c in iter_clauses(segment.when, "when"))
    return sorted(names)


def preview_contexts(
    snapshot: CompiledEnvironment,
    flag: Flag,
    version: int,
    environment: str,
    config: EnvironmentConfig,
    contexts: Sequence[Mapping[str, Any]],
    prerequisites: Sequence[Flag],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Validate the unsaved ``config`` and evaluate it for each context (nothing is written)."""
    catalog = Catalog.build([*prerequisites, flag], snapshot.segments.values())
    issues = validate_environment(flag, environment, config, catalog)
    candidate = flag.model_copy(update={"environments": {**flag.environments, environment: config}})
    compiled = snapshot.with_flag(candidate, version + 1)
    instant = now or datetime.now(UTC)
    results: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for index, context in enumerate(contexts[:MAX_PREVIEW_CONTEXTS]):
        result = compiled.evaluate(flag.key, context, instant)
        variation = result.variation or "(none)"
        counts[variation] = counts.get(variation, 0) + 1
        results.append(
            {
                "index": index,
                "key": str(context.get("targetingKey", context.get("key", index))),
                "variation": result.variation,
                "value": result.value,
                "reason": str(result.reason),
                "rule_id": result.rule_id,
                "error_code": str(result.error_code) if result.error_code else None,
            }
        )
    analysis = analyze_environment(config)
    warnings = [{"path": w.path, "code": w.code, "message": w.message} for w in analysis.warnings]
    return {
        "issues": issues,
        "warnings": warnings,
        "complexity": analysis.complexity,
        "results": results,
        "counts": counts,
    }
