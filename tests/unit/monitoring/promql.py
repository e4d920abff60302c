"""A small PromQL scanner for tests: which metric names (and grouping labels) does an expression use?

It is not a parser; it removes, in order, everything that can contain identifiers that are not
metric names — string literals, Grafana variables, label matchers ``{...}``, ranges and subqueries
``[...]``, grouping clauses ``by/without/on/ignoring/group_left/group_right (...)``, durations and
numbers — then classifies each remaining identifier: followed by ``(`` it is a function or an
aggregation (which must be a real one), a keyword/operator word, or else a metric name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["PROMETHEUS_BUILTINS", "PROMQL_FUNCTIONS", "PromqlScan", "scan_promql", "unknown_metric_names"]

_FUNCTION_WORDS: Final = """
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
    day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
    double_exponential_smoothing
    hour idelta increase irate label_join label_replace ln log2 log10 minute month predict_linear rate
    resets round scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year
    avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time
    stddev_over_time stdvar_over_time last_over_time present_over_time mad_over_time
    acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi start end
"""
PROMQL_FUNCTIONS: Final = frozenset(_FUNCTION_WORDS.split())
_KEYWORDS: Final = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE)
_DURATION = re.compile(r"(?<![\w.])(?:\d+(?:ms|s|m|h|d|w|y))+(?![\w.])")
_NUMBER = re.compile(r"(?<![\w.])(?:0x[0-9a-fA-F]+|\d*\.?\d+(?:[eE][+-]?\d+)?)(?![\w.])")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class PromqlScan:
    metrics: frozenset[str]
    functions: frozenset[str]
    unknown_functions: frozenset[str]
    grouping_labels: frozenset[str] = field(default_factory=frozenset)


def scan_promql(expr: str) -> PromqlScan:
    """The metric names, functions and grouping labels named by ``expr``."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    while _RANGE.search(text):  # nested subqueries: [5m:1m] inside other brackets
        text = _RANGE.sub(" ", text)
    grouping: set[str] = set()
    for match in _GROUPING.finditer(text):
        grouping.update(label.strip() for label in match.group(2).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    metrics: set[str] = set()
    functions: set[str] = set()
    unknown: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        followed_by_paren = text[match.end() :].lstrip().startswith("(")
        if followed_by_paren and word.lower() not in _KEYWORDS:
            (functions if word in PROMQL_FUNCTIONS else unknown).add(word)
        elif word.lower() not in _KEYWORDS:
            metrics.add(word)
    return PromqlScan(frozenset(metrics), frozenset(functions), frozenset(unknown), frozenset(grouping))


PROMETHEUS_BUILTINS: Final = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"})
"""Series Prometheus itself creates for every target / alert (allowed in our rules and dashboards)."""


def unknown_metric_names(expr: str, known: frozenset[str]) -> set[str]:
    """Metric names in ``expr`` that are neither in ``known`` nor Prometheus built-ins, plus any
    unknown function (reported as ``name()``)."""
    scan = scan_promql(expr)
    return {m for m in scan.metrics if m not in known and m not in PROMETHEUS_BUILTINS} | {
        f"{f}()" for f in scan.unknown_functions
    }
