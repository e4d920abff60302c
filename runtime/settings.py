"""Process settings, from ``FLAGSTREAM_*`` environment variables (pydantic-settings).

Build them with :func:`load_settings` in an app factory or a command's entry point, never at import
time. The three server addresses also honour the plain variables every tool knows
(``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``); the ``FLAGSTREAM_`` one wins when
both are set. Left unset, they are None: ``flagstream run`` then starts the embedded local stack.

A bad value raises :class:`SettingsError` whose message names the variable, what was found and the
shape that is expected, one line per problem.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

__all__ = [
    "ENV_PREFIX",
    "RATE_CLASSES",
    "RATE_LIMIT_ROLES",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_rate",
]

ENV_PREFIX = "FLAGSTREAM_"

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
RATE_CLASSES: Final = ("evaluation", "commands", "audit")
# Who a limit may name: "*" (every role's default), "anonymous" (requests without a key) and the key
# roles (events.store.keys.Role; a unit test keeps the two lists equal).
RATE_LIMIT_ROLES: Final = ("*", "anonymous", "admin", "writer", "reader", "ops", "alerts", "evaluator")
_RATE = re.compile(r"([0-9]{1,9})(?:/([0-9]{1,9}(?:\.[0-9]{1,6})?))?")
_SOURCE_FIELD = re.compile(r'field "(\w+)"')
_JSON_EXAMPLES: Final = {
    "rate_limits": '; expected e.g. {"*": {"evaluation": "20000/1"}, "anonymous": {"audit": "20/1"}}',
    "log_personal_attributes": '; expected e.g. ["email", "phone"]',
}


class SettingsError(ValueError):
    """The settings are invalid; the message tells a person which variable to fix and how."""


def _aliases(name: str) -> AliasChoices:
    return AliasChoices(ENV_PREFIX + name.upper(), name.upper())


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as e:
        raise ValueError(f"is not a valid URL ({e}); expected something like {example}") from e
    if parts.scheme not in schemes:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(
            f"has {shown}; expected one of {', '.join(s + '://' for s in schemes)} as in {example}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"has no host; expected something like {example}")
    del port
    return value


def parse_rate(text: str) -> tuple[int, float]:
    """``"100/60"`` → 100 requests per 60 s (a bare ``"100"`` is per second); ValueError otherwise."""
    found = _RATE.fullmatch(text.strip())
    count = int(found[1]) if found else 0
    seconds = float(found[2]) if found and found[2] else 1.0
    if count < 1 or not 0 < seconds < math.inf:
        raise ValueError(f"rate limit {text!r}: expected <requests>/<seconds>, both positive, e.g. 100/1")
    return count, seconds


class Settings(BaseSettings):
    """Everything a Flagstream process can be configured with. See ``docs/local-stack.md``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    # -- servers (None: use the embedded local stack) ------------------------------------------
    database_url: str | None = Field(default=None, validation_alias=_aliases("database_url"))
    redis_url: str | None = Field(default=None, validation_alias=_aliases("redis_url"))
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=_aliases("kafka_bootstrap_servers")
    )

    # -- names -----------------------------------------------------------------------------------
    flag_events_topic: str = "flagstream.flag-events"
    metric_alerts_topic: str = "flagstream.metric-alerts"
    redis_namespace: str = "fs"
    projector_group: str = "flagstream-projector"
    rollback_group: str = "flagstream-rollback"
    kafka_client_id: str = "flagstream"

    # -- HTTP API --------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    request_max_bytes: int = Field(default=1_048_576, gt=0)
    wait_projected_timeout_seconds: float = Field(default=5.0, gt=0)
    # the evaluation routes' happy path without FastAPI's machinery (api.fastlane); off = every
    # request through the routes (same answers, about ten times the CPU per evaluation)
    evaluation_fast_lane: bool = True
    idempotency_ttl_seconds: int = Field(default=86_400, gt=0)

    # -- logging ---------------------------------------------------------------------------------
    log_level: LogLevel = "info"
    log_json: bool = True
    log_file: str | None = None  # also write the lines to this file, rotated by size
    log_file_max_bytes: int = Field(default=10_485_760, gt=0)
    log_file_backups: int = Field(default=5, ge=0)
    log_requests: bool = True  # one ``http.request`` line per request (api.middleware)
    log_evaluation_sample_rate: float = Field(default=0.1, ge=0, le=1)
    log_personal_attributes: list[str] = Field(
        default_factory=lambda: ["email", "name", "phone", "ip", "address", "ssn"]
    )

    # -- operations hardening (api.ratelimit, monitoring.sentry, /readyz, /metrics) --------------
    rate_limits_enabled: bool = True
    # {role | "*" | "anonymous": {"evaluation" | "commands" | "audit": "<requests>/<seconds>"}}
    rate_limits: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "*": {"evaluation": "20000/1", "commands": "2000/1", "audit": "200/1"},
            "anonymous": {"evaluation": "2000/1", "commands": "200/1", "audit": "20/1"},
        }
    )
    rate_limit_fallback_seconds: float = Field(default=5.0, gt=0)
    sentry_dsn: str | None = Field(default=None, validation_alias=_aliases("sentry_dsn"))
    sentry_environment: str = "production"
    metrics_api_key: str | None = None  # when set, /metrics needs ``Authorization: Bearer <it>``
    reader_max_environments: int = Field(default=64, ge=1)
    as_of_max_concurrency: int = Field(default=2, ge=1)
    idempotency_purge_interval_seconds: float = Field(default=300.0, gt=0)

    # -- Postgres --------------------------------------------------------------------------------
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_command_timeout_seconds: float = Field(default=10.0, gt=0)

    # -- Kafka -----------------------------------------------------------------------------------
    kafka_send_timeout_seconds: float = Field(default=10.0, gt=0)
    kafka_request_timeout_seconds: float = Field(default=10.0, gt=0)

    # -- Redis -----------------------------------------------------------------------------------
    redis_socket_timeout_seconds: float = Field(default=5.0, gt=0)

    # -- relay -----------------------------------------------------------------------------------
    relay_poll_interval_seconds: float = Field(default=0.05, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    relay_breaker_fail_max: int = Field(default=5, ge=1)
    relay_breaker_reset_seconds: float = Field(default=5.0, gt=0)

    # -- workers ---------------------------------------------------------------------------------
    metrics_port: int = Field(default=0, ge=0, le=65535)  # a worker's /metrics port; 0 = not served
    shutdown_grace_seconds: float = Field(default=15.0, gt=0)

    # -- rollback worker --------------------------------------------------------------------------
    rollback_lookback_seconds: float = Field(default=1800.0, gt=0)
    rollback_default_confirmation_seconds: float = Field(default=60.0, ge=0)
    rollback_dry_run: bool = False

    # -- local stack -----------------------------------------------------------------------------
    data_dir: str = ".runtime-data"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        example = "postgresql://user:password@localhost:5432/flagstream"
        return None if value is None else _check_url(value, _POSTGRES_SCHEMES, example)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value, _REDIS_SCHEMES, "redis://localhost:6379/0")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        example = "host1:9092,host2:9092"
        entries = [entry.strip() for entry in value.split(",")]
        for entry in entries:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"has {entry!r}; expected a comma-separated list of host:port, e.g. {example}"
                )
        return ",".join(entries)

    @field_validator("flag_events_topic", "metric_alerts_topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not value or len(value) > 249 or not set(value) <= allowed:
            raise ValueError(
                "expected a Kafka topic name: 1-249 characters among letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("redis_namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not value or ":" in value or any(c.isspace() for c in value):
            raise ValueError("expected a non-empty key prefix without ':' or spaces, e.g. fs")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        problems = []
        for role, classes in value.items():
            if role not in RATE_LIMIT_ROLES:
                problems.append(f"unknown role {role!r} (expected one of {', '.join(RATE_LIMIT_ROLES)})")
                continue
            for rate_class, text in classes.items():
                if rate_class not in RATE_CLASSES:
                    problems.append(
                        f"role {role!r} has unknown class {rate_class!r} (expected {', '.join(RATE_CLASSES)})"
                    )
                    continue
                try:
                    parse_rate(text)
                except ValueError as e:
                    problems.append(f"role {role!r}, class {rate_class!r}: {e}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _check_pool_bounds(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"db_pool_min ({self.db_pool_min}) is above db_pool_max ({self.db_pool_max}): "
                f"set {ENV_PREFIX}DB_POOL_MIN <= {ENV_PREFIX}DB_POOL_MAX"
            )
        return self


def _variable_for(location: str) -> str:
    """The environment variable behind an error location (a field name or one of its aliases)."""
    for name, field in Settings.model_fields.items():
        if not isinstance(field.validation_alias, AliasChoices):
            continue
        choices = [str(choice).upper() for choice in field.validation_alias.choices]
        if location.upper() in choices or location == name:
            present = [choice for choice in choices if choice in {k.upper() for k in os.environ}]
            return present[0] if present else " or ".join(choices)
    return ENV_PREFIX + location.upper()


def _mask(value: Any) -> str:
    """Show a value without any password it may hold."""
    text = str(value)
    try:
        parts = urlsplit(text)
        if parts.password:
            return text.replace(":" + parts.password + "@", ":***@", 1)
    except ValueError:
        pass
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: Mapping[str, Any]) -> str:
    location = error.get("loc") or ()
    field_name = str(location[0]) if location else ""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not field_name:
        return f"- {message}"
    return f"- {_variable_for(field_name)}={_mask(error.get('input'))!r}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (``overrides`` win); raise :class:`SettingsError` if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        lines = [_describe(error) for error in e.errors(include_url=False)]
        raise SettingsError("invalid Flagstream settings:\n" + "\n".join(lines)) from e
    except SourceError as e:  # a structured value (a dict or list) that is not JSON
        found = _SOURCE_FIELD.search(str(e))
        variable = _variable_for(found[1]) if found else "a FLAGSTREAM_ variable"
        value = next((v for k, v in os.environ.items() if k.upper() == variable.upper()), "")
        example = _JSON_EXAMPLES.get(found[1] if found else "", "")
        raise SettingsError(
            "invalid Flagstream settings:\n"
            f"- {variable}={_mask(value)!r}: is not valid JSON ({e.__cause__}){example}"
        ) from e
