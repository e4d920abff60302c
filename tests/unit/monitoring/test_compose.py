"""docker-compose.yml and the Dockerfile: no Docker engine runs here, so check their structure."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.unit.monitoring._paths import COMPOSE, DOCKERFILE, PROMETHEUS_CONFIG, REPO, load_yaml

APP_SERVICES = {"api", "relay", "projector", "rollback"}
WORKERS = {"relay": "workers.relay", "projector": "workers.projector", "rollback": "workers.rollback"}
REQUIRED = APP_SERVICES | {"kafka", "redis", "postgres", "prometheus", "alertmanager", "grafana"}


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return services


def _depends_on(service: dict[str, Any]) -> dict[str, Any]:
    depends = service.get("depends_on", {})
    return {name: {} for name in depends} if isinstance(depends, list) else dict(depends)


def test_compose__services__all_required_present() -> None:
    assert set(_services()) >= REQUIRED


def test_compose__depends_on__names_existing_services_and_waits_for_health() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition.get("condition") == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"


def test_compose__every_service__has_a_healthcheck() -> None:
    for name, service in _services().items():
        assert service.get("healthcheck", {}).get("test"), name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_compose__app_service__is_wired_to_infrastructure_by_service_name(name: str) -> None:
    service = _services()[name]
    env = service["environment"]
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["DATABASE_URL"]).scheme.startswith("postgres")
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    assert [server.split(":")[0] for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(",")] == ["kafka"]
    assert set(_depends_on(service)) >= {"postgres", "redis", "kafka"}
    assert service["build"]["dockerfile"] == "Dockerfile"


def test_compose__api__runs_the_app_factory_on_8080() -> None:
    command = _services()["api"]["command"]
    assert command[:4] == ["python", "-m", "uvicorn", "api.app:create_app"]
    assert "--factory" in command
    assert command[command.index("--port") + 1] == "8080"


@pytest.mark.parametrize(("name", "module"), sorted(WORKERS.items()))
def test_compose__worker__runs_its_module_and_is_scraped_on_its_metrics_port(name: str, module: str) -> None:
    service = _services()[name]
    assert service["command"] == ["python", "-m", module]
    port = service["environment"]["FLAGSTREAM_METRICS_PORT"]
    assert f"{name}:{port}" in _scrape_targets()


def test_prometheus__api_and_alertmanager_targets__are_compose_services() -> None:
    services = _services()
    for target in _scrape_targets():
        host = target.split(":")[0]
        assert host == "localhost" or host in services, target
    assert "api:8080" in _scrape_targets()
    [alerting] = load_yaml(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]


def _scrape_targets() -> set[str]:
    config = load_yaml(PROMETHEUS_CONFIG)
    return {
        t for job in config["scrape_configs"] for static in job["static_configs"] for t in static["targets"]
    }


def test_compose__kafka__is_apache_kafka_in_kraft_mode_without_zookeeper() -> None:
    services = _services()
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert not any("zookeeper" in name for name in services)
    assert not any("ZOOKEEPER" in key for key in env)
    data_mount = next(v for v in kafka["volumes"] if not v.startswith("./"))
    assert data_mount.split(":")[1] == env["KAFKA_LOG_DIRS"], "the data volume must hold the log dirs"


def test_compose__postgres__is_version_15() -> None:
    assert re.match(r"postgres:15(\.|-|$)", _services()["postgres"]["image"])


def test_compose__bind_mounts__point_at_files_in_the_repository() -> None:
    checked = 0
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing"
                checked += 1
    assert checked >= 5


def test_compose__monitoring_mounts__rules_and_provisioning_reach_their_containers() -> None:
    services = _services()
    mounts = {v.split(":")[1]: v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert mounts["/etc/prometheus/rules"] == "./monitoring/prometheus/rules"
    assert mounts["/etc/prometheus/prometheus.yml"] == "./monitoring/prometheus/prometheus.yml"
    assert mounts["/etc/alertmanager/alertmanager.yml"] == "./monitoring/alertmanager/alertmanager.yml"
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    assert (REPO / "monitoring/prometheus/rules").glob("*.rules.yml")


def test_dockerfile__base_image_and_user__python_311_slim_and_not_root() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    # the USER comes after the last FROM, so it applies to the final stage
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    last_user = max(i for i, line in enumerate(instructions) if line.upper().startswith("USER "))
    assert last_user > last_from


def test_dockerignore__keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "monitoring/alertmanager/secrets"} <= ignored
