"""``FLAGSTREAM_RATE_LIMITS`` is checked when the settings are loaded: a malformed value stops the
process at start-up with a :class:`SettingsError` naming the variable, never a traceback later."""

from __future__ import annotations

import json
import os
from typing import get_args

import pytest

from api import serve
from api.ratelimit import Quota, RateClass, parse_quota
from events.store.keys import Role
from runtime.settings import RATE_CLASSES, RATE_LIMIT_ROLES, SettingsError, load_settings

VARIABLE = "FLAGSTREAM_RATE_LIMITS"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FLAGSTREAM_"):
            monkeypatch.delenv(name)


def _refusal(monkeypatch: pytest.MonkeyPatch, value: str) -> str:
    monkeypatch.setenv(VARIABLE, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    return str(refused.value)


def test_rate_limits__valid_json__loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, '{"reader": {"audit": "5/60"}, "*": {"evaluation": "100"}}')

    assert load_settings().rate_limits == {"reader": {"audit": "5/60"}, "*": {"evaluation": "100"}}


@pytest.mark.parametrize("value", ["not json", '{"*": {"audit": "1/1"}', "{'*': {}}"])
def test_rate_limits__not_json__settings_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _refusal(monkeypatch, value)

    assert VARIABLE in message
    assert "JSON" in message


@pytest.mark.parametrize("quota", ["abc/1", "0/1", "5/0", "-1/2", "1/inf", "1/nan", "1e3/1", "5/", ""])
def test_rate_limits__bad_quota__settings_error_names_variable_role_class_and_value(
    monkeypatch: pytest.MonkeyPatch, quota: str
) -> None:
    message = _refusal(monkeypatch, json.dumps({"reader": {"audit": quota}}))

    assert VARIABLE in message
    assert "reader" in message and "audit" in message
    assert f"{quota!r}" in message
    assert "<requests>/<seconds>" in message


def test_rate_limits__unknown_class__settings_error_lists_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _refusal(monkeypatch, '{"*": {"evalution": "100/1"}}')

    assert VARIABLE in message
    assert "'evalution'" in message
    assert all(name in message for name in ("evaluation", "commands", "audit"))


def test_rate_limits__wrong_shape__settings_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, '{"*": "100/1"}')

    assert VARIABLE in message


def test_api_serve__malformed_rate_limits__exits_2_naming_the_variable_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(VARIABLE, '{"*": {"audit": "abc/1"}}')

    status = serve.main([])

    assert status == 2
    assert VARIABLE in capsys.readouterr().err


@pytest.mark.parametrize("text", ["1/inf", "1/nan", "1e3/1", "5 / 1x", "9" * 400 + "/1", "1/" + "9" * 400])
def test_parse_quota__non_finite_or_not_plain_decimal__refused(text: str) -> None:
    with pytest.raises(ValueError, match="<requests>/<seconds>"):
        parse_quota(text)


def test_parse_quota__fractional_window__accepted() -> None:
    assert parse_quota(" 10/0.5 ") == Quota(10, 0.5)


def test_rate_classes__settings_check_the_classes_the_limiter_charges() -> None:
    assert set(RATE_CLASSES) == set(get_args(RateClass))


def test_rate_limits__unknown_role__settings_error_lists_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misspelt role would silently fall back to "*" (a limit nobody meant): refuse it at start-up."""
    message = _refusal(monkeypatch, '{"redaer": {"audit": "5/60"}}')

    assert VARIABLE in message
    assert "'redaer'" in message
    assert all(name in message for name in ("*", "anonymous", "reader", "evaluator"))


def test_rate_limit_roles__every_key_role_and_the_two_wildcards() -> None:
    assert set(RATE_LIMIT_ROLES) == {*(str(role) for role in Role), "*", "anonymous"}
