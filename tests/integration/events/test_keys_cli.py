"""``flagstream keys create | list | revoke`` against a real database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.keys import app


@pytest.fixture
def runner(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    return CliRunner()


def test_keys_cli__create_list_revoke__round_trip(runner: CliRunner) -> None:
    created = runner.invoke(app, ["create", "--role", "writer", "--principal", "deploy-bot"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("fs_")

    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0
    key_id, role, principal = listed.stdout.split("\t")[:3]
    assert (role, principal) == ("writer", "deploy-bot")
    assert secret not in listed.stdout

    assert runner.invoke(app, ["revoke", key_id]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["list"]).stdout
    assert runner.invoke(app, ["revoke", key_id]).exit_code == 1


def test_keys_cli__unknown_role__usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["create", "--role", "root", "--principal", "x"])
    assert result.exit_code == 2
