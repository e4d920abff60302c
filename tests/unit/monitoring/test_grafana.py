"""Grafana provisioning and dashboards: they parse, ids are unique, every query names real metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoring.metrics import SERIES_NAMES
from tests.unit.monitoring._paths import COMPOSE, GRAFANA, load_yaml
from tests.unit.monitoring.promql import unknown_metric_names

DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
_LABEL_VALUES = re.compile(r"^label_values\(\s*(?:(?P<metric>[^,()]+?)\s*,\s*)?(?P<label>\w+)\s*\)$")


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _datasource_uids() -> set[str]:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    return {source["uid"] for source in config["datasources"]}


def test_dashboards__both_present_with_unique_uids_and_titles() -> None:
    dashboards = [_load(path) for path in DASHBOARDS]
    uids = {d["uid"] for d in dashboards}
    assert {"flagstream-overview", "flagstream-flags"} <= uids
    assert len(uids) == len(dashboards) == len({d["title"] for d in dashboards})


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard__panels__have_unique_ids_and_fit_the_grid(path: Path) -> None:
    panels = list(_panels(_load(path)["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard__every_query__names_only_exported_metrics(path: Path) -> None:
    dashboard = _load(path)
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    assert exprs
    for expr in exprs:
        assert unknown_metric_names(expr, SERIES_NAMES) == set(), expr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard__variables__query_exported_metrics(path: Path) -> None:
    for variable in _load(path)["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.match(variable["query"])
        assert match, variable["query"]
        assert match["metric"] in SERIES_NAMES, variable["query"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard__datasources__are_the_provisioned_ones(path: Path) -> None:
    known = _datasource_uids()
    dashboard = _load(path)
    refs = [p["datasource"] for p in _panels(dashboard["panels"]) if "datasource" in p]
    refs += [t["datasource"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    assert refs
    assert {ref["uid"] for ref in refs} <= known


def test_provisioning__dashboard_provider_path__is_where_compose_mounts_the_dashboards() -> None:
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "flagstream.yml")["providers"][0]
    mounts = load_yaml(COMPOSE)["services"]["grafana"]["volumes"]
    mounted = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    assert mounted[provider["options"]["path"]] == "./monitoring/grafana/dashboards"
    assert mounted["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"


def test_provisioning__datasource__points_at_the_compose_prometheus() -> None:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    [default] = [s for s in config["datasources"] if s.get("isDefault")]
    assert default["type"] == "prometheus"
    assert default["url"] == "http://prometheus:9090"
    assert "prometheus" in load_yaml(COMPOSE)["services"]
