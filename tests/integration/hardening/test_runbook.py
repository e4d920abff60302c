"""The runbook keeps up with the alert rules and the dashboards (no server needed): every alert of the
Prometheus rules has a section whose heading names it, saying what it means and what to do; the
situations the operations issue lists are covered; and every panel the runbook points at exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RUNBOOK = REPO / "docs" / "runbook.md"
RULES = sorted((REPO / "monitoring" / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((REPO / "monitoring" / "grafana" / "dashboards").glob("*.json"))


def _alert_names() -> list[str]:
    names = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


def _sections() -> dict[str, str]:
    """``## heading`` → the text under it (up to the next ``##``)."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _panel_titles() -> set[str]:
    titles: set[str] = set()
    for path in DASHBOARDS:
        titles |= {str(p["title"]) for p in json.loads(path.read_text(encoding="utf-8"))["panels"]}
    return titles


def test_rules__alerts_found() -> None:
    assert RULES and len(_alert_names()) >= 10


@pytest.mark.parametrize("alert", _alert_names())
def test_runbook__every_alert__has_a_section_saying_what_it_means_and_what_to_do(alert: str) -> None:
    sections = [body for heading, body in _sections().items() if f"`{alert}`" in heading]

    assert len(sections) == 1, f"no (or several) runbook headings name {alert}"
    assert "**Means.**" in sections[0] and "**Do.**" in sections[0]


@pytest.mark.parametrize(
    "situation", ["DLQ growing", "Relay behind", "Projector lag", "Breaker open", "Rollback fired"]
)
def test_runbook__situations_of_the_operations_issue__each_has_a_section(situation: str) -> None:
    words = situation.lower().replace("dlq", "dead-letter queue").split()

    assert any(all(w in heading.lower() for w in words) for heading in _sections()), situation


def test_runbook__dashboard_panels_it_points_at__exist() -> None:
    text = RUNBOOK.read_text(encoding="utf-8").replace("\n", " ")
    pointed = {
        title
        for run in re.findall(r'→ ((?:"[^"]+"(?:,| and)? ?)+)', text)
        for title in re.findall(r'"([^"]+)"', run)
    }

    assert pointed, "the runbook names no panel"
    assert pointed - _panel_titles() == set()
