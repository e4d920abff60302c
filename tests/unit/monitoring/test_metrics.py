"""monitoring.metrics: names follow Prometheus conventions, helpers record what they say."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics
from monitoring.metrics import HISTOGRAM_NAMES, METRIC_NAMES, REGISTRY, SERIES_NAMES


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metric_names__all__follow_prometheus_conventions() -> None:
    for name in METRIC_NAMES:
        assert name.startswith("flagstream_"), name
        assert name == name.lower(), name
        assert "__" not in name, name
        assert not name.endswith(("_ms", "_milliseconds")), name
    for name in HISTOGRAM_NAMES:
        assert name.endswith("_seconds"), name


def test_metric_names__counters__end_with_total_and_nothing_else_does() -> None:
    for family in REGISTRY.collect():
        if not family.name.startswith("flagstream_"):
            continue
        exported = family.name + "_total" if family.type == "counter" else family.name
        assert exported in METRIC_NAMES
        assert exported.endswith("_total") == (family.type == "counter"), exported


def test_metric_names__required_families__are_all_defined() -> None:
    required = {
        "flagstream_http_requests_total",
        "flagstream_http_request_duration_seconds",
        "flagstream_evaluations_total",
        "flagstream_commands_total",
        "flagstream_events_appended_total",
        "flagstream_events_published_total",
        "flagstream_events_projected_total",
        "flagstream_relay_backlog_events",
        "flagstream_relay_lag_seconds",
        "flagstream_projection_lag_seconds",
        "flagstream_projector_checkpoint_offset",
        "flagstream_circuit_breaker_state",
        "flagstream_circuit_breaker_transitions_total",
        "flagstream_dead_letters",
        "flagstream_dead_letter_oldest_age_seconds",
        "flagstream_blocked_flags",
        "flagstream_rollbacks_total",
        "flagstream_incidents_total",
        "flagstream_auth_failures_total",
        "flagstream_db_pool_connections_in_use",
        "flagstream_db_pool_connections_max",
        "flagstream_reader_staleness_seconds",
        "flagstream_kafka_send_failures_total",
    }
    assert required <= METRIC_NAMES


def test_render_latest__after_recording__exposes_the_sample_in_text_format() -> None:
    metrics.observe_http("/api/v1/flags/{key}", "get", 200, 0.012)
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = [s for s in families["flagstream_http_requests"].samples if s.name.endswith("_total")]
    assert any(
        s.labels == {"route": "/api/v1/flags/{key}", "method": "GET", "status": "200"} for s in samples
    )


def test_render_latest__exported_flagstream_series__are_all_in_series_names() -> None:
    metrics.observe_command("ToggleFlag", "accepted", 0.01)
    body, _ = metrics.render_latest()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name.startswith("flagstream_") and not sample.name.endswith("_created"):
                assert sample.name in SERIES_NAMES, sample.name


def test_observe_http__unknown_method__is_folded_into_other() -> None:
    before = _value("flagstream_http_requests_total", route="/x", method="OTHER", status="405")
    metrics.observe_http("/x", "BREW", 405, 0.001)
    assert _value("flagstream_http_requests_total", route="/x", method="OTHER", status="405") == before + 1
    assert (
        REGISTRY.get_sample_value(
            "flagstream_http_requests_total", {"route": "/x", "method": "BREW", "status": "405"}
        )
        is None
    )


def test_record_evaluation__flag_not_found__counts_under_unknown_flag() -> None:
    before = _value(
        "flagstream_evaluations_total", flag=metrics.UNKNOWN_FLAG, environment="prod", reason="ERROR"
    )
    metrics.record_evaluation("attacker-chosen-key-123", "prod", "ERROR", error_code="FLAG_NOT_FOUND")
    after = _value(
        "flagstream_evaluations_total", flag=metrics.UNKNOWN_FLAG, environment="prod", reason="ERROR"
    )
    assert after == before + 1
    assert (
        REGISTRY.get_sample_value(
            "flagstream_evaluations_total",
            {"flag": "attacker-chosen-key-123", "environment": "prod", "reason": "ERROR"},
        )
        is None
    )


@pytest.mark.parametrize(("state", "value"), [("closed", 0), ("half_open", 1), ("open", 2)])
def test_record_breaker_transition__state__sets_gauge_and_counts(
    state: metrics.BreakerState, value: int
) -> None:
    before = _value("flagstream_circuit_breaker_transitions_total", breaker="kafka-test", state=state)
    metrics.record_breaker_transition("kafka-test", state)
    assert _value("flagstream_circuit_breaker_state", breaker="kafka-test") == value
    assert (
        _value("flagstream_circuit_breaker_transitions_total", breaker="kafka-test", state=state)
        == before + 1
    )


def test_set_dead_letters__class_disappears__its_gauge_drops_to_zero() -> None:
    metrics.set_dead_letters("relay-test", {"PoisonEvent": 2, "SchemaTooNew": 1}, oldest_age_seconds=42.0)
    assert _value("flagstream_dead_letters", stage="relay-test", error_class="PoisonEvent") == 2
    assert _value("flagstream_dead_letter_oldest_age_seconds", stage="relay-test") == 42.0
    metrics.set_dead_letters("relay-test", {"SchemaTooNew": 1}, oldest_age_seconds=10.0)
    assert _value("flagstream_dead_letters", stage="relay-test", error_class="PoisonEvent") == 0
    metrics.set_dead_letters("relay-test", {}, oldest_age_seconds=99.0)
    assert _value("flagstream_dead_letters", stage="relay-test", error_class="SchemaTooNew") == 0
    assert _value("flagstream_dead_letter_oldest_age_seconds", stage="relay-test") == 0


def test_set_relay_backlog__empty__reports_zero_lag() -> None:
    metrics.set_relay_backlog(5, oldest_age_seconds=3.5)
    assert _value("flagstream_relay_backlog_events") == 5
    assert _value("flagstream_relay_lag_seconds") == 3.5
    metrics.set_relay_backlog(0, oldest_age_seconds=3.5)
    assert _value("flagstream_relay_lag_seconds") == 0


def test_record_kafka_send_failure__exception__labels_by_class_name() -> None:
    before = _value("flagstream_kafka_send_failures_total", topic="t", error_class="TimeoutError")
    metrics.record_kafka_send_failure("t", TimeoutError("boom"))
    assert _value("flagstream_kafka_send_failures_total", topic="t", error_class="TimeoutError") == before + 1


def test_observe_rollback__with_duration__counts_and_observes() -> None:
    count_before = _value("flagstream_rollback_duration_seconds_count")
    before = _value("flagstream_rollbacks_total", outcome="rolled_back")
    metrics.observe_rollback("rolled_back", seconds=0.4)
    metrics.observe_rollback("skipped")
    assert _value("flagstream_rollbacks_total", outcome="rolled_back") == before + 1
    assert _value("flagstream_rollback_duration_seconds_count") == count_before + 1


def test_start_metrics_server__free_port__serves_the_registry_until_stopped() -> None:
    metrics.set_build_info("test", "unit")
    server = metrics.start_metrics_server(0, addr="127.0.0.1")
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert 'flagstream_build_info{role="unit",version="test"} 1.0' in body
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
