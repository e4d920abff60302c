"""Alertmanager routing: flag-related alerts reach our webhook with a credential from a file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tests.unit.monitoring._paths import ALERTMANAGER_CONFIG, COMPOSE, RULES_DIR, load_yaml
from tests.unit.monitoring.promql import scan_promql

WEBHOOK_PATH = "/api/v1/alerts/alertmanager"
_MATCHER = re.compile(r'^\s*(\w+)\s*(=~|!~|!=|=)\s*"?([^"]*)"?\s*$')


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


def _matches(route: dict[str, Any], labels: dict[str, str]) -> bool:
    for matcher in route.get("matchers", []):
        parsed = _MATCHER.match(matcher)
        assert parsed, f"unparseable matcher {matcher!r}"
        name, op, value = parsed.groups()
        actual = labels.get(name, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def _receivers_for(labels: dict[str, str]) -> list[str]:
    """The receivers Alertmanager notifies for an alert with ``labels`` (first match, `continue`)."""
    root = load_yaml(ALERTMANAGER_CONFIG)["route"]
    found: list[str] = []
    for child in root.get("routes", []):
        if _matches(child, labels):
            found.append(child["receiver"])
            if not child.get("continue", False):
                return found
    return found or [root["receiver"]]


def _webhook_configs() -> list[dict[str, Any]]:
    config = load_yaml(ALERTMANAGER_CONFIG)
    return [hook for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])]


def test_routes__every_receiver_named__exists() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert len(receivers) == len(config["receivers"])
    assert {route["receiver"] for route in _routes(config["route"])} <= receivers
    assert "matchers" not in config["route"], "the root route must catch everything"


def test_routes__flag_alert__goes_to_the_webhook_and_to_people() -> None:
    receivers = _receivers_for({"alertname": "X", "flagstream_rollback": "true", "severity": "critical"})
    assert receivers == ["flagstream-rollback", "default"]


def test_routes__platform_alert__never_reaches_the_rollback_webhook() -> None:
    assert _receivers_for({"alertname": "FlagstreamHighP95Latency", "severity": "warning"}) == ["default"]
    assert _receivers_for({"alertname": "Y", "flagstream_rollback": "false", "severity": "info"}) == [
        "default"
    ]


def test_routes__each_rule_labelled_for_rollback__is_routed_to_the_webhook() -> None:
    for path in RULES_DIR.glob("*.yml"):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                labels = {k: str(v) for k, v in rule.get("labels", {}).items()} | {"alertname": rule["alert"]}
                routed = "flagstream-rollback" in _receivers_for(labels)
                assert routed == (labels.get("flagstream_rollback") == "true"), rule["alert"]


def test_webhook__url__is_our_api_route_on_the_compose_api_service() -> None:
    [hook] = _webhook_configs()
    url = urlsplit(hook["url"])
    assert url.path == WEBHOOK_PATH
    api = load_yaml(COMPOSE)["services"]["api"]
    assert url.hostname == "api"
    command = api["command"]
    assert command[command.index("--port") + 1] == str(url.port)
    assert hook["send_resolved"] is True


def test_webhook__credential__is_a_bearer_read_from_a_mounted_file() -> None:
    [hook] = _webhook_configs()
    authorization = hook["http_config"]["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert "credentials" not in authorization, "never inline the key"
    credentials_file = authorization["credentials_file"]
    mounts = load_yaml(COMPOSE)["services"]["alertmanager"]["volumes"]
    targets = [m.split(":")[1] for m in mounts if m.startswith("./")]
    assert any(credentials_file.startswith(target.rstrip("/") + "/") for target in targets)


def test_inhibitions__equal_labels__are_kept_by_both_source_and_target_alerts() -> None:
    alerts = {
        rule["alert"]: rule
        for path in RULES_DIR.glob("*.yml")
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    }
    for inhibit in load_yaml(ALERTMANAGER_CONFIG).get("inhibit_rules", []):
        equal = set(inhibit["equal"])
        assert equal, "without `equal` an inhibition silences unrelated alerts"
        for side in ("source_matchers", "target_matchers"):
            route = {"matchers": inhibit[side]}
            matched = [name for name, rule in alerts.items() if _matches(route, {"alertname": name})]
            assert matched, f"{side} matches no alert of ours"
            for name in matched:
                assert equal <= scan_promql(alerts[name]["expr"]).grouping_labels, name
