"""Every Prometheus metric of Flagstream, defined once.

All metrics live in one module-level :data:`REGISTRY` (a dedicated ``CollectorRegistry``,
not prometheus_client's global default), so ``/metrics`` and the workers' metrics ports
export exactly the platform's metrics plus the process/platform/GC collectors registered
below, and third-party libraries cannot collide with our names. Callers record through the
small helpers (``observe_http``, ``observe_command`` ...) rather than touching the metric
objects, so label names and values stay consistent. Names follow Prometheus conventions:
``flagstream_`` prefix, base units (seconds), ``_total`` counters, ``_seconds`` histograms.

:data:`METRIC_NAMES` holds the family names as Prometheus sees them (counters with
``_total``; a histogram ``x`` is also queried as ``x_bucket``/``x_sum``/``x_count``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

__all__ = [
    "HISTOGRAM_NAMES",
    "METRIC_NAMES",
    "REGISTRY",
    "SERIES_NAMES",
    "UNKNOWN_FLAG",
    "UNMATCHED_ROUTE",
    "BreakerState",
    "CommandOutcome",
    "MetricsServer",
    "RollbackOutcome",
    "observe_command",
    "observe_http",
    "observe_rollback",
    "record_alert_received",
    "record_auth_failure",
    "record_breaker_transition",
    "record_dead_letter_parked",
    "record_error",
    "record_evaluation",
    "record_events_appended",
    "record_events_projected",
    "record_events_published",
    "record_idempotency_purge",
    "record_incident",
    "record_kafka_send_failure",
    "record_rate_limit",
    "render_latest",
    "set_blocked_flags",
    "set_breaker_state",
    "set_build_info",
    "set_db_pool",
    "set_dead_letters",
    "set_projection_lag",
    "set_projector_offset",
    "set_reader_staleness",
    "set_relay_backlog",
    "start_metrics_server",
]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    if _collector is not None:
        REGISTRY.register(_collector)

UNMATCHED_ROUTE: Final = "<unmatched>"
"""Route label for requests no route matched (404s): never put a raw path in a label."""
UNKNOWN_FLAG: Final = "<unknown>"
"""Flag label of evaluations of flags that do not exist (caller input must not create series)."""
_HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

BreakerState = Literal["closed", "half_open", "open"]
CommandOutcome = Literal["accepted", "replayed", "rejected", "conflict", "unavailable", "error"]
RollbackOutcome = Literal["rolled_back", "skipped", "dry_run", "cooldown", "not_implicated", "failed"]

_BREAKER_VALUES: Final[dict[str, int]] = {"closed": 0, "half_open": 1, "open": 2}
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROLLBACK_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# --- HTTP ---------------------------------------------------------------------------------
HTTP_REQUESTS: Final = Counter(
    "flagstream_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    "flagstream_http_request_duration_seconds",
    "HTTP request latency, by route template, method, status.",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
AUTH_FAILURES: Final = Counter(
    "flagstream_auth_failures",
    "Requests refused by authentication/authorisation, by reason.",
    ["reason"],
    registry=REGISTRY,
)
HTTP_ERRORS: Final = Counter(
    "flagstream_http_errors",
    "Error answers, by stable error code and status.",
    ["code", "status"],
    registry=REGISTRY,
)
RATE_LIMIT_DECISIONS: Final = Counter(
    "flagstream_rate_limit_decisions",
    "Rate-limit decisions, by class, decision and store (redis/local).",
    ["class", "decision", "store"],
    registry=REGISTRY,
)
IDEMPOTENCY_PURGED: Final = Counter(
    "flagstream_idempotency_keys_purged",
    "Idempotency keys deleted after the retention period.",
    registry=REGISTRY,
)
# --- evaluation, commands, events ---------------------------------------------------------
EVALUATIONS: Final = Counter(
    "flagstream_evaluations",
    "Flag evaluations, by flag, environment and reason.",
    ["flag", "environment", "reason"],
    registry=REGISTRY,
)
COMMANDS: Final = Counter(
    "flagstream_commands",
    "Commands handled, by command type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)
COMMAND_DURATION: Final = Histogram(
    "flagstream_command_duration_seconds",
    "Time to handle a command (decide + append), by type.",
    ["type"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENTS_APPENDED: Final = Counter(
    "flagstream_events_appended",
    "Events appended to the Postgres event store, by event type.",
    ["type"],
    registry=REGISTRY,
)
EVENTS_PUBLISHED: Final = Counter(
    "flagstream_events_published",
    "Events published to Kafka by the relay, by topic.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_PROJECTED: Final = Counter(
    "flagstream_events_projected",
    "Events handled by the projector, by environment and outcome.",
    ["environment", "outcome"],
    registry=REGISTRY,
)
KAFKA_SEND_FAILURES: Final = Counter(
    "flagstream_kafka_send_failures",
    "Failed Kafka sends, by topic and error class.",
    ["topic", "error_class"],
    registry=REGISTRY,
)
# --- relay, projection, readers -----------------------------------------------------------
RELAY_BACKLOG: Final = Gauge(
    "flagstream_relay_backlog_events", "Events appended but not yet published to Kafka.", registry=REGISTRY
)
RELAY_LAG: Final = Gauge(
    "flagstream_relay_lag_seconds",
    "Age of the oldest event not yet published (0 when none).",
    registry=REGISTRY,
)
PROJECTION_LAG: Final = Gauge(
    "flagstream_projection_lag_seconds",
    "Seconds from an event's occurrence to its projection into Redis (last applied), by environment.",
    ["environment"],
    registry=REGISTRY,
)
PROJECTOR_OFFSET: Final = Gauge(
    "flagstream_projector_checkpoint_offset",
    "Next Kafka offset the projector will read, by partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
READER_STALENESS: Final = Gauge(
    "flagstream_reader_staleness_seconds",
    "Seconds since an evaluator's snapshot was last confirmed current, by environment.",
    ["environment"],
    registry=REGISTRY,
)
# --- failure handling ---------------------------------------------------------------------
BREAKER_STATE: Final = Gauge(
    "flagstream_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    registry=REGISTRY,
)
BREAKER_TRANSITIONS: Final = Counter(
    "flagstream_circuit_breaker_transitions",
    "Circuit breaker state changes, by breaker and new state.",
    ["breaker", "state"],
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Gauge(
    "flagstream_dead_letters",
    "Dead letters currently parked, by stage and error class.",
    ["stage", "error_class"],
    registry=REGISTRY,
)
DEAD_LETTERS_PARKED: Final = Counter(
    "flagstream_dead_letters_parked",
    "Dead letters parked, by stage and error class.",
    ["stage", "error_class"],
    registry=REGISTRY,
)
DEAD_LETTER_AGE: Final = Gauge(
    "flagstream_dead_letter_oldest_age_seconds",
    "Age of the oldest parked dead letter (0 when none).",
    ["stage"],
    registry=REGISTRY,
)
BLOCKED_FLAGS: Final = Gauge(
    "flagstream_blocked_flags",
    "Flags whose later events wait behind a dead letter, by stage.",
    ["stage"],
    registry=REGISTRY,
)
DB_POOL_IN_USE: Final = Gauge(
    "flagstream_db_pool_connections_in_use",
    "Database connections checked out, by pool.",
    ["pool"],
    registry=REGISTRY,
)
DB_POOL_SIZE: Final = Gauge(
    "flagstream_db_pool_connections_max",
    "Maximum size of the database pool, by pool.",
    ["pool"],
    registry=REGISTRY,
)
# --- alerts, rollbacks, incidents ---------------------------------------------------------
ALERTS_RECEIVED: Final = Counter(
    "flagstream_metric_alerts_received",
    "Metric alerts accepted, by source and status (firing/resolved).",
    ["source", "status"],
    registry=REGISTRY,
)
ROLLBACKS: Final = Counter(
    "flagstream_rollbacks",
    "Rollback decisions of the rollback worker (and manual ones), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
ROLLBACK_DURATION: Final = Histogram(
    "flagstream_rollback_duration_seconds",
    "Seconds from alert accepted to compensating event appended.",
    buckets=_ROLLBACK_BUCKETS,
    registry=REGISTRY,
)
INCIDENTS: Final = Counter(
    "flagstream_incidents", "Incidents recorded (one per rollback episode).", registry=REGISTRY
)
BUILD_INFO: Final = Gauge(
    "flagstream_build_info",
    "Always 1; labels carry the version and the process role.",
    ["version", "role"],
    registry=REGISTRY,
)

_COUNTERS: Final = (
    HTTP_REQUESTS,
    AUTH_FAILURES,
    EVALUATIONS,
    COMMANDS,
    EVENTS_APPENDED,
    EVENTS_PUBLISHED,
    EVENTS_PROJECTED,
    KAFKA_SEND_FAILURES,
    BREAKER_TRANSITIONS,
    DEAD_LETTERS_PARKED,
    ALERTS_RECEIVED,
    ROLLBACKS,
    INCIDENTS,
    HTTP_ERRORS,
    RATE_LIMIT_DECISIONS,
    IDEMPOTENCY_PURGED,
)
_OTHERS: Final = (
    HTTP_DURATION,
    COMMAND_DURATION,
    ROLLBACK_DURATION,
    RELAY_BACKLOG,
    RELAY_LAG,
    PROJECTION_LAG,
    PROJECTOR_OFFSET,
    READER_STALENESS,
    BREAKER_STATE,
    DEAD_LETTERS,
    DEAD_LETTER_AGE,
    BLOCKED_FLAGS,
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
    BUILD_INFO,
)


def _family_name(metric: Counter | Gauge | Histogram) -> str:
    return next(iter(metric.describe())).name


METRIC_NAMES: Final[frozenset[str]] = frozenset(
    [f"{_family_name(m)}_total" for m in _COUNTERS] + [_family_name(m) for m in _OTHERS]
)
HISTOGRAM_NAMES: Final[frozenset[str]] = frozenset(
    _family_name(m) for m in _OTHERS if isinstance(m, Histogram)
)
SERIES_NAMES: Final[frozenset[str]] = (METRIC_NAMES - HISTOGRAM_NAMES) | frozenset(
    name + suffix for name in HISTOGRAM_NAMES for suffix in ("_bucket", "_sum", "_count")
)
"""Every sample name a PromQL query may select (a histogram ``x`` as ``x_bucket``/``x_sum``/``x_count``)."""
_dead_letter_classes: dict[str, set[str]] = {}
_evaluation_children: dict[tuple[str, str, str], Counter] = {}


class EvaluationLike(Protocol):
    """What :func:`record_evaluations` reads of a ``core.evaluation.EvaluationResult``."""

    @property
    def reason(self) -> str: ...

    @property
    def error_code(self) -> str | None: ...


_rate_limit_children: dict[tuple[str, str, str], Counter] = {}
_http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency. ``route`` is the template (``/api/v1/flags/{key}``)
    or :data:`UNMATCHED_ROUTE`, never the raw path."""
    verb = method.upper()
    labels = (route, verb if verb in _HTTP_METHODS else "OTHER", status)
    children = _http_children.get(labels)
    if children is None:  # hot path: cache the labelled children (bounded: routes x methods x statuses)
        text = (route, labels[1], str(status))
        children = _http_children.setdefault(
            labels, (HTTP_REQUESTS.labels(*text), HTTP_DURATION.labels(*text))
        )
    children[0].inc()
    children[1].observe(seconds)


def record_error(code: str, status: int) -> None:
    """Count one error answer by its stable code (``validation_error``, ``too_many_requests`` ...)."""
    HTTP_ERRORS.labels(code, str(status)).inc()


def record_rate_limit(rate_class: str, decision: str, shared: bool) -> None:
    """``decision``: ``allowed``/``limited``; ``shared``: decided in Redis (else the local fallback)."""
    key = (rate_class, decision, "redis" if shared else "local")
    child = _rate_limit_children.get(key)
    if child is None:  # hot path (every limited request): cache the labelled child; bounded 3 x 2 x 2
        child = _rate_limit_children.setdefault(key, RATE_LIMIT_DECISIONS.labels(*key))
    child.inc()


def record_idempotency_purge(count: int) -> None:
    IDEMPOTENCY_PURGED.inc(count)


def record_auth_failure(reason: str) -> None:
    """``reason``: e.g. ``missing``, ``invalid``, ``revoked``, ``forbidden``."""
    AUTH_FAILURES.labels(reason).inc()


def record_evaluation(flag: str, environment: str, reason: str, error_code: str | None = None) -> None:
    """Count one evaluation. ``reason``: ``core.evaluation.Reason`` (``TARGETING_MATCH``, ``SPLIT``,
    ``ERROR`` ...); pass the result's ``error_code`` too: a ``FLAG_NOT_FOUND`` evaluation is
    counted under :data:`UNKNOWN_FLAG`, so arbitrary keys sent by callers never create series."""
    key = (UNKNOWN_FLAG if error_code == "FLAG_NOT_FOUND" else flag, environment, reason)
    child = _evaluation_children.get(key)
    if child is None:
        child = _evaluation_child(key)
    child.inc()


def record_evaluations(environment: str, results: Mapping[str, EvaluationLike]) -> None:
    """Count every result of one bulk evaluation (:func:`record_evaluation` for each, in one loop)."""
    children = _evaluation_children
    for flag, result in results.items():
        code = result.error_code
        key = (UNKNOWN_FLAG if code == "FLAG_NOT_FOUND" else flag, environment, result.reason)
        child = children.get(key)
        if child is None:
            child = _evaluation_child(key)
        child.inc()


def _evaluation_child(key: tuple[str, str, str]) -> Counter:
    """The labelled child of ``key``, cached (the hot path skips the label lookup; bounded: flags x
    environments x reasons). Reasons are string enums: equal to, and hashed as, their text."""
    flag, environment, reason = key
    return _evaluation_children.setdefault(key, EVALUATIONS.labels(flag, environment, str(reason)))


def observe_command(command_type: str, outcome: CommandOutcome, seconds: float | None = None) -> None:
    COMMANDS.labels(command_type, outcome).inc()
    if seconds is not None:
        COMMAND_DURATION.labels(command_type).observe(seconds)


def record_events_appended(event_type: str, count: int = 1) -> None:
    EVENTS_APPENDED.labels(event_type).inc(count)


def record_events_published(topic: str, count: int = 1) -> None:
    EVENTS_PUBLISHED.labels(topic).inc(count)


def record_events_projected(environment: str, outcome: str, count: int = 1) -> None:
    """``outcome``: ``applied``, ``duplicate``, ``stale`` or ``parked``."""
    EVENTS_PROJECTED.labels(environment, outcome).inc(count)


def record_kafka_send_failure(topic: str, error: BaseException | str) -> None:
    """Count a failed send; ``error`` is the exception (its class name is used) or a class name."""
    error_class = error if isinstance(error, str) else type(error).__name__
    KAFKA_SEND_FAILURES.labels(topic, error_class).inc()


def set_relay_backlog(events: int, oldest_age_seconds: float) -> None:
    RELAY_BACKLOG.set(events)
    RELAY_LAG.set(oldest_age_seconds if events else 0.0)


def set_projection_lag(environment: str, seconds: float) -> None:
    PROJECTION_LAG.labels(environment).set(max(seconds, 0.0))


def set_projector_offset(topic: str, partition: int, next_offset: int) -> None:
    PROJECTOR_OFFSET.labels(topic, str(partition)).set(next_offset)


def set_reader_staleness(environment: str, seconds: float) -> None:
    READER_STALENESS.labels(environment).set(max(seconds, 0.0))


def set_breaker_state(breaker: str, state: BreakerState) -> None:
    """Set the gauge only (use at start-up); a change of state goes through
    :func:`record_breaker_transition`, which also counts it."""
    BREAKER_STATE.labels(breaker).set(_BREAKER_VALUES[state])


def record_breaker_transition(breaker: str, state: BreakerState) -> None:
    set_breaker_state(breaker, state)
    BREAKER_TRANSITIONS.labels(breaker, state).inc()


def set_dead_letters(stage: str, counts: Mapping[str, int], oldest_age_seconds: float) -> None:
    """Replace the parked dead-letter gauges of ``stage`` with ``counts`` (error class → count)."""
    seen = _dead_letter_classes.setdefault(stage, set())
    for error_class in seen - counts.keys():
        DEAD_LETTERS.labels(stage, error_class).set(0)
    for error_class, count in counts.items():
        DEAD_LETTERS.labels(stage, error_class).set(count)
    seen.update(counts)
    DEAD_LETTER_AGE.labels(stage).set(oldest_age_seconds if any(counts.values()) else 0.0)


def record_dead_letter_parked(stage: str, error_class: str) -> None:
    DEAD_LETTERS_PARKED.labels(stage, error_class).inc()


def set_blocked_flags(stage: str, count: int) -> None:
    BLOCKED_FLAGS.labels(stage).set(count)


def set_db_pool(pool: str, in_use: int, size: int) -> None:
    DB_POOL_IN_USE.labels(pool).set(in_use)
    DB_POOL_SIZE.labels(pool).set(size)


def record_alert_received(source: str, status: str) -> None:
    """``source``: ``alertmanager`` or ``generic``; ``status``: ``firing`` or ``resolved``."""
    ALERTS_RECEIVED.labels(source, status).inc()


def observe_rollback(outcome: RollbackOutcome, seconds: float | None = None) -> None:
    """Count a rollback decision; ``seconds`` (alert accepted → event appended) when one was made."""
    ROLLBACKS.labels(outcome).inc()
    if seconds is not None:
        ROLLBACK_DURATION.observe(seconds)


def record_incident() -> None:
    INCIDENTS.inc()


def set_build_info(version: str, role: str) -> None:
    """``role``: ``api``, ``relay``, ``projector``, ``rollback`` ..."""
    BUILD_INFO.labels(version, role).set(1)


def render_latest() -> tuple[bytes, str]:
    """The text exposition of :data:`REGISTRY` and its content type, for a ``/metrics`` route.

    The content type is the classic ``version=0.0.4`` text format, which every Prometheus
    version accepts (our names are all legacy-valid, so the body is the same as 1.0.0)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` HTTP server (see :func:`start_metrics_server`)."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve :data:`REGISTRY` on ``http://addr:port/metrics`` from a daemon thread (the workers,
    with ``port`` from ``FLAGSTREAM_METRICS_PORT``); ``port=0`` picks a free port (see ``.port``)."""
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return MetricsServer(port=server.server_port, _server=server, _thread=thread)
