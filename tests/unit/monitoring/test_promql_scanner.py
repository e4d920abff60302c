"""The PromQL scanner used by the rule and dashboard tests must itself be trustworthy."""

from __future__ import annotations

import pytest

from monitoring.metrics import SERIES_NAMES
from tests.unit.monitoring.promql import scan_promql, unknown_metric_names


def test_scan__unknown_metric_name__is_reported() -> None:
    expr = "sum by (job) (rate(flagstream_http_requests_total[5m])) / sum(rate(flagstream_nope_total[5m]))"
    assert unknown_metric_names(expr, SERIES_NAMES) == {"flagstream_nope_total"}


def test_scan__histogram_base_name_without_suffix__is_reported() -> None:
    expr = "rate(flagstream_http_request_duration_seconds[5m])"
    assert unknown_metric_names(expr, SERIES_NAMES) == {"flagstream_http_request_duration_seconds"}


def test_scan__misspelled_function__is_reported() -> None:
    assert unknown_metric_names("rat(flagstream_commands_total[5m])", SERIES_NAMES) == {"rat()"}


@pytest.mark.parametrize(
    ("expr", "metrics"),
    [
        ('sum by (le, route) (rate(a_bucket{route!="/metrics", job=~"x|y"}[5m]))', {"a_bucket"}),
        ("sum(rate(a_total[5m])) by (job) / on(job) group_left(role) b", {"a_total", "b"}),
        ("max(a) > 100 and max(deriv(a[10m])) > 0 or vector(0)", {"a"}),
        ("max_over_time(rate(a_total[5m])[1h:1m]) offset 1h30m > 1e-3", {"a_total"}),
        ("sum without (instance, pool) (a) > bool 0.9 unless b", {"a", "b"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ('sum(rate(a_total{environment=~"$environment"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(a_bucket[${__range}])))", {"a_bucket"}),
        ("a == Inf or b != NaN or c > 0x1F", {"a", "b", "c"}),
        ('count(up{job=~"flagstream-.*"} == 0)', {"up"}),
    ],
)
def test_scan__expression__finds_exactly_its_metric_names(expr: str, metrics: set[str]) -> None:
    scan = scan_promql(expr)
    assert scan.metrics == metrics
    assert not scan.unknown_functions


def test_scan__grouping_clauses__yield_their_labels_not_metrics() -> None:
    scan = scan_promql("sum by (flag, environment) (rate(a_total[5m])) / ignoring(reason) b")
    assert scan.grouping_labels == {"flag", "environment", "reason"}
    assert scan.metrics == {"a_total", "b"}
