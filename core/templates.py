"""Rule templates: common targeting set-ups as ready-made environment configurations.

Pure data. Each template is a valid :class:`~core.model.EnvironmentConfig` for a boolean flag
(variations ``on``/``off``) built from its parameters; the console offers them as starting points
and the API lists them at ``GET /api/v1/rules/templates``. Parameters have defaults, so every
template renders without input (the defaults are examples, e.g. a launch date).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.model import EnvironmentConfig

__all__ = ["TEMPLATES", "Template", "TemplateParameter", "render_template"]


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    name: str
    type: str
    default: Any
    description: str


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    name: str
    description: str
    parameters: tuple[TemplateParameter, ...]
    build: Callable[[Mapping[str, Any]], dict[str, Any]]

    def to_dict(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "parameters": [
                {"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                for p in self.parameters
            ],
            "config": render_template(self.id, params or {}),
        }


def _off() -> dict[str, Any]:
    return {"enabled": True, "off_variation": "off", "default": {"variation": "off"}}


def _percentage(p: Mapping[str, Any]) -> dict[str, Any]:
    percent = int(p["percent"])
    return {
        **_off(),
        "default": {
            "rollout": [
                {"variation": "on", "weight": percent * 1000},
                {"variation": "off", "weight": (100 - percent) * 1000},
            ],
            "bucket_by": p["bucket_by"],
        },
    }


def _internal_first(p: Mapping[str, Any]) -> dict[str, Any]:
    clause = {"attribute": p["attribute"], "op": "ends_with", "values": [p["domain"]]}
    return {**_off(), "rules": [{"id": "internal-users", "when": clause, "serve": {"variation": "on"}}]}


def _country_list(p: Mapping[str, Any]) -> dict[str, Any]:
    clause = {"attribute": p["attribute"], "op": "in", "values": list(p["countries"])}
    return {**_off(), "rules": [{"id": "countries", "when": clause, "serve": {"variation": "on"}}]}


def _beta_segment(p: Mapping[str, Any]) -> dict[str, Any]:
    clause = {"attribute": "targetingKey", "op": "in_segment", "values": [p["segment"]]}
    return {**_off(), "rules": [{"id": "beta-segment", "when": clause, "serve": {"variation": "on"}}]}


def _kill_switch(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"enabled": True, "off_variation": "off", "default": {"variation": "on"}}


def _scheduled_launch(p: Mapping[str, Any]) -> dict[str, Any]:
    return {**_kill_switch(p), "schedule": {"enable_at": p["enable_at"]}}


TEMPLATES: tuple[Template, ...] = (
    Template(
        "percentage-rollout",
        "Percentage rollout",
        "Serve 'on' to a stable share of users, bucketed by an attribute.",
        (
            TemplateParameter("percent", "number", 10, "share of users served 'on' (0-100)"),
            TemplateParameter("bucket_by", "string", "targetingKey", "attribute hashed for bucketing"),
        ),
        _percentage,
    ),
    Template(
        "internal-users-first",
        "Internal users first",
        "Serve 'on' to your own staff (by e-mail domain), 'off' to everyone else.",
        (
            TemplateParameter("attribute", "string", "email", "attribute holding the e-mail address"),
            TemplateParameter("domain", "string", "@example.com", "internal e-mail domain"),
        ),
        _internal_first,
    ),
    Template(
        "country-list",
        "Country list",
        "Serve 'on' in a list of countries.",
        (
            TemplateParameter("attribute", "string", "country", "attribute holding the country code"),
            TemplateParameter("countries", "array", ["US", "CA"], "ISO 3166 country codes"),
        ),
        _country_list,
    ),
    Template(
        "beta-segment",
        "Beta segment",
        "Serve 'on' to the members of a segment (create the segment first).",
        (TemplateParameter("segment", "string", "beta-testers", "segment key"),),
        _beta_segment,
    ),
    Template(
        "kill-switch",
        "Kill switch",
        "On for everyone while enabled; disabling the environment turns the feature off at once.",
        (),
        _kill_switch,
    ),
    Template(
        "scheduled-launch",
        "Scheduled launch",
        "Turned on by the schedule at a given instant (UTC).",
        (TemplateParameter("enable_at", "datetime", "2030-01-01T09:00:00Z", "launch instant"),),
        _scheduled_launch,
    ),
)

_BY_ID = {t.id: t for t in TEMPLATES}


def render_template(template_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The template's configuration with ``params`` (defaults for those left out), validated.

    Raises ``KeyError`` for an unknown template and pydantic's ``ValidationError`` (or ``ValueError``
    for a parameter of the wrong type) when the parameters make an invalid configuration.
    """
    template = _BY_ID[template_id]
    values = {p.name: params.get(p.name, p.default) for p in template.parameters}
    config = template.build(values)
    return EnvironmentConfig.model_validate(config).model_dump(mode="json", exclude_defaults=True)
