"""Issue 13 asks for "a Grafana panel of errors by code": the overview dashboard has one, and it
queries the series ``record_error`` really exports (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

from monitoring import metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "monitoring/grafana/dashboards/flagstream-overview.json"


def test_overview_dashboard__errors_by_code_panel__queries_the_exported_error_counter() -> None:
    metrics.record_error("validation_error", 422)
    exported = {
        sample.name
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("code") == "validation_error" and not sample.name.endswith("_created")
    }
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    by_code = [
        target["expr"]
        for panel in panels
        if panel["title"] == "Errors by code"
        for target in panel.get("targets", [])
    ]

    assert exported == {"flagstream_http_errors_total"}
    assert by_code == ["sum by (code) (rate(flagstream_http_errors_total[5m]))"]
