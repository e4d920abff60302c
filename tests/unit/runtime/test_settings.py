"""Settings: environment variables, their plain aliases, and error messages a person can act on."""

from __future__ import annotations

import os

import pytest

from runtime.settings import Settings, SettingsError, load_settings

_SERVER_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "FLAGSTREAM_DATABASE_URL",
    "FLAGSTREAM_REDIS_URL",
    "FLAGSTREAM_KAFKA_BOOTSTRAP_SERVERS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name in _SERVER_VARS or name.upper().startswith("FLAGSTREAM_"):
            monkeypatch.delenv(name)


def test_load_settings__nothing_set__servers_unset_and_documented_defaults() -> None:
    settings = load_settings()

    assert (settings.database_url, settings.redis_url, settings.kafka_bootstrap_servers) == (None, None, None)
    assert settings.flag_events_topic == "flagstream.flag-events"
    assert settings.metric_alerts_topic == "flagstream.metric-alerts"
    assert settings.redis_namespace == "fs"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert settings.request_max_bytes == 1_048_576
    assert settings.data_dir == ".runtime-data"


def test_load_settings__plain_server_variables__are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example:5432/fs")
    monkeypatch.setenv("REDIS_URL", "redis://cache.example:6379/2")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")

    settings = load_settings()

    assert settings.database_url == "postgresql://u@db.example:5432/fs"
    assert settings.redis_url == "redis://cache.example:6379/2"
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9093"


def test_load_settings__prefixed_and_plain_both_set__prefixed_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://plain@h/db")
    monkeypatch.setenv("FLAGSTREAM_DATABASE_URL", "postgresql://prefixed@h/db")

    assert load_settings().database_url == "postgresql://prefixed@h/db"


def test_load_settings__prefixed_variables__override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGSTREAM_API_PORT", "9000")
    monkeypatch.setenv("FLAGSTREAM_LOG_LEVEL", "debug")

    settings = load_settings()

    assert (settings.api_port, settings.log_level) == (9000, "debug")


def test_load_settings__keyword_overrides__win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/0")

    assert load_settings(redis_url="redis://override:6379/0").redis_url == "redis://override:6379/0"


def test_load_settings__wrong_database_scheme__names_variable_and_expected_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "DATABASE_URL='mysql://u@h/db'" in message
    assert "postgresql://" in message


def test_load_settings__url_with_password__password_masked_in_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLAGSTREAM_REDIS_URL", "redis://:hunter2@cache:99999/0")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert "FLAGSTREAM_REDIS_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("value", ["kafka", "kafka:", ":9092", "kafka:notaport", "kafka:70000", "a:1,,b:2"])
def test_load_settings__malformed_bootstrap__explains_host_port_list(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    with pytest.raises(SettingsError, match=r"KAFKA_BOOTSTRAP_SERVERS=.*host:port"):
        load_settings()


def test_load_settings__several_problems__one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGSTREAM_API_PORT", "eighty")
    monkeypatch.setenv("FLAGSTREAM_LOG_LEVEL", "loud")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    lines = str(caught.value).splitlines()
    assert any(line.startswith("- FLAGSTREAM_API_PORT='eighty'") for line in lines)
    assert any(line.startswith("- FLAGSTREAM_LOG_LEVEL='loud'") for line in lines)


def test_load_settings__pool_min_above_max__says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGSTREAM_DB_POOL_MIN", "20")

    with pytest.raises(SettingsError, match="FLAGSTREAM_DB_POOL_MIN <= FLAGSTREAM_DB_POOL_MAX"):
        load_settings()


@pytest.mark.parametrize("field", ["flag_events_topic", "metric_alerts_topic"])
def test_load_settings__invalid_topic_name__refused(field: str) -> None:
    with pytest.raises(SettingsError, match="Kafka topic name"):
        load_settings(**{field: "bad topic!"})


def test_load_settings__namespace_with_colon__refused() -> None:
    with pytest.raises(SettingsError, match="without ':'"):
        load_settings(redis_namespace="fs:shadow")


def test_settings__built__are_immutable() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.api_port = 1  # type: ignore[misc]
    assert isinstance(settings, Settings)
