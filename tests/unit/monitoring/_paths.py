"""Paths of the repository files the monitoring tests read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "monitoring"
RULES_DIR = MONITORING / "prometheus" / "rules"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
GRAFANA = MONITORING / "grafana"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCS = REPO / "docs" / "monitoring.md"


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)
