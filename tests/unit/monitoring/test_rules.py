"""Prometheus configuration and alert rules: they parse and only name metrics we really export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from monitoring.metrics import METRIC_NAMES, SERIES_NAMES
from tests.unit.monitoring._paths import DOCS, PROMETHEUS_CONFIG, RULES_DIR, load_yaml
from tests.unit.monitoring.promql import scan_promql, unknown_metric_names

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "FlagstreamHigh5xxErrorRatio",
    "FlagstreamAuthenticationFailureBurst",
    "FlagstreamHighP95Latency",
    "FlagstreamDatabasePoolPressure",
    "FlagstreamRelayBacklogGrowing",
    "FlagstreamProjectionLag",
    "FlagstreamDeadLettersPresent",
    "FlagstreamCircuitBreakerOpen",
}
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def _rules() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, rule) for path in RULE_FILES for group in load_yaml(path)["groups"] for rule in group["rules"]
    ]


def _alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in _rules() if "alert" in rule]


def test_rule_files__exist_and_match_the_prometheus_rule_glob() -> None:
    assert RULE_FILES
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    assert all(path.name.endswith(".rules.yml") for path in RULE_FILES)


def test_rule_files__groups__have_unique_names_and_rules() -> None:
    names = [group["name"] for path in RULE_FILES for group in load_yaml(path)["groups"]]
    assert len(names) == len(set(names))
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            assert group["rules"], group["name"]
            assert set(group) <= {"name", "rules", "interval", "limit"}, group["name"]


@pytest.mark.parametrize(
    "rule", [rule for _, rule in _rules()], ids=lambda r: r.get("alert", r.get("record"))
)
def test_rule__expression__names_only_exported_metrics(rule: dict[str, Any]) -> None:
    assert unknown_metric_names(rule["expr"], SERIES_NAMES) == set()
    assert scan_promql(rule["expr"]).metrics, "an expression with no metric cannot fire"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert__labels_and_annotations__carry_severity_and_summary(alert: dict[str, Any]) -> None:
    assert set(alert) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert alert["labels"]["severity"] in SEVERITIES
    assert alert["annotations"]["summary"].strip()
    assert alert["annotations"]["description"].strip()
    assert re.fullmatch(r"\d+[smh]", alert.get("for", "0m"))


_AGGREGATION = re.compile(r"\b(sum|max|min|avg|count|group|topk|bottomk|quantile)\s*(\(|by|without)")


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert__templates__only_use_labels_the_aggregation_keeps(alert: dict[str, Any]) -> None:
    if not _AGGREGATION.search(alert["expr"]):
        return  # e.g. `up == 0`: every label of the series survives
    texts = [*alert["annotations"].values(), *alert["labels"].values()]
    used = {label for text in texts for label in _TEMPLATE_LABEL.findall(str(text))}
    assert used <= scan_promql(alert["expr"]).grouping_labels


def test_alerts__required_ones__are_defined_once() -> None:
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


def test_alerts__flag_related__route_to_rollback_and_name_flag_or_environment() -> None:
    flag_alerts = [a for a in _alerts() if a["labels"].get("flagstream_rollback") is not None]
    assert flag_alerts, "at least one alert concerns a flag"
    for alert in flag_alerts:
        assert alert["labels"]["flagstream_rollback"] == "true"  # a string: label values are strings
        assert scan_promql(alert["expr"]).grouping_labels & {"flag", "environment"}, alert["alert"]


def test_alerts__platform_alerts__never_trigger_rollbacks() -> None:
    for alert in _alerts():
        grouping = scan_promql(alert["expr"]).grouping_labels
        if not grouping & {"flag", "environment"}:
            assert "flagstream_rollback" not in alert["labels"], alert["alert"]


def test_docs__every_metric_and_alert__is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = {name for name in METRIC_NAMES if f"`{name}`" not in text}
    missing |= {alert["alert"] for alert in _alerts() if f"`{alert['alert']}`" not in text}
    assert missing == set()
