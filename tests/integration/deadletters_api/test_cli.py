"""``flagstream dlq list | show | redrive | purge | blocked`` against a fresh real database."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import pytest
from typer.testing import CliRunner

from cli.dlq import app
from core.envelope import Event
from core.events import DeadLetterPurgedPayload, read_payload
from events.deadletters import DeadLetter, DeadLetterStore, NewDeadLetter
from events.deadletters.operations import DEAD_LETTERS_STREAM
from events.store.db import apply_migrations, create_pool
from events.store.postgres import PostgresEventStore
from runtime.processes import run_coroutine_sync
from tests.integration.deadletters_api.conftest import a_letter

pytestmark = pytest.mark.integration
T = TypeVar("T")


class Database:
    """Sync access for the CLI tests (the CLI itself runs its own event loop)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _with_pool(self, action: Callable[[asyncpg.Pool], Coroutine[Any, Any, T]]) -> T:
        async def go() -> T:
            await apply_migrations(self.url)
            pool = await create_pool(self.url, min_size=1, max_size=1)
            try:
                return await action(pool)
            finally:
                await pool.close()

        return run_coroutine_sync(go, timeout=30)

    def park(self, *letters: NewDeadLetter) -> list[DeadLetter]:
        async def park_all(pool: asyncpg.Pool) -> list[DeadLetter]:
            return [await DeadLetterStore(pool).park(x) for x in letters]

        return self._with_pool(park_all)

    def get(self, letter_id: int) -> DeadLetter:
        return self._with_pool(lambda pool: DeadLetterStore(pool).get(letter_id))

    def ops_events(self) -> list[Event]:
        return self._with_pool(lambda pool: PostgresEventStore(pool).read_stream(DEAD_LETTERS_STREAM))


@pytest.fixture
def runner(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    return CliRunner()


@pytest.fixture
def db(fresh_database: str) -> Database:
    return Database(fresh_database)


def test_dlq_list__parked_letters__table_and_json(runner: CliRunner, db: Database) -> None:
    a, b = db.park(a_letter("projector", "a", 2), a_letter("relay", "b", 1))
    table = runner.invoke(app, ["list"])
    assert table.exit_code == 0, table.output
    rows = [line.split("\t") for line in table.stdout.strip().splitlines()[1:]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (str(a.id), "projector", "a", "2", "parked"),
        (str(b.id), "relay", "b", "1", "parked"),
    ]
    filtered = runner.invoke(app, ["list", "--stage", "relay", "--json"])
    assert filtered.exit_code == 0, filtered.output
    assert [item["id"] for item in json.loads(filtered.stdout)["items"]] == [b.id]


def test_dlq_list__limit__pages_with_after(runner: CliRunner, db: Database) -> None:
    letters = db.park(*(a_letter(flag_key=f"f{n}") for n in range(3)))
    first = json.loads(runner.invoke(app, ["list", "--limit", "2", "--json"]).stdout)
    assert [i["id"] for i in first["items"]] == [letters[0].id, letters[1].id]
    second = runner.invoke(app, ["list", "--limit", "2", "--after", str(first["next_after"]), "--json"])
    assert [i["id"] for i in json.loads(second.stdout)["items"]] == [letters[2].id]


def test_dlq_list__unknown_stage__usage_error(runner: CliRunner) -> None:
    assert runner.invoke(app, ["list", "--stage", "kafka"]).exit_code == 2


def test_dlq_show__existing__prints_letter_with_event(runner: CliRunner, db: Database) -> None:
    (letter,) = db.park(a_letter("relay", "checkout", 3))
    result = runner.invoke(app, ["show", str(letter.id), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["id"], data["flag"], data["version"], data["event"]) == (
        letter.id,
        "checkout",
        3,
        letter.event_body,
    )


def test_dlq_show__unknown_id__exit_1(runner: CliRunner, db: Database) -> None:
    db.park(a_letter())
    result = runner.invoke(app, ["show", "999"])
    assert result.exit_code == 1 and "no dead letter 999" in result.stderr


def test_dlq_purge__with_actor__records_event_with_that_actor(runner: CliRunner, db: Database) -> None:
    (letter,) = db.park(a_letter("projector", "checkout", 4))
    result = runner.invoke(
        app, ["purge", str(letter.id), "--reason", "poison", "--actor", "ops-alice", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["event_version"] == 1
    (event,) = db.ops_events()
    assert (event.type, event.actor, event.reason) == ("DeadLetterPurged", "ops-alice", "poison")
    payload = read_payload(event)
    assert isinstance(payload, DeadLetterPurgedPayload) and payload.letter.letter_id == letter.id
    assert (db.get(letter.id).status, db.get(letter.id).resolved_by) == ("purged", "ops-alice")


def test_dlq_purge__no_actor__acts_as_cli_os_user(runner: CliRunner, db: Database) -> None:
    (letter,) = db.park(a_letter())
    assert runner.invoke(app, ["purge", str(letter.id), "--reason", "poison"]).exit_code == 0
    assert [e.actor for e in db.ops_events()] == [f"cli:{getpass.getuser()}"]


@pytest.mark.parametrize("args", [[], ["--reason", ""], ["--reason", "  "]])
def test_dlq_purge__no_reason__usage_error_and_nothing_purged(
    runner: CliRunner, db: Database, args: list[str]
) -> None:
    (letter,) = db.park(a_letter())
    assert runner.invoke(app, ["purge", str(letter.id), *args]).exit_code == 2
    assert db.get(letter.id).status == "parked" and db.ops_events() == []


def test_dlq_purge__twice__second_exits_3(runner: CliRunner, db: Database) -> None:
    (letter,) = db.park(a_letter())
    assert runner.invoke(app, ["purge", str(letter.id), "--reason", "x"]).exit_code == 0
    assert runner.invoke(app, ["purge", str(letter.id), "--reason", "x"]).exit_code == 3


def test_dlq_purge__unknown_id__exit_1(runner: CliRunner, db: Database) -> None:
    db.park(a_letter())
    assert runner.invoke(app, ["purge", "404", "--reason", "x"]).exit_code == 1
    assert db.ops_events() == []


def test_dlq_redrive__one_id__marks_redriven_and_records_event(runner: CliRunner, db: Database) -> None:
    (letter,) = db.park(a_letter())
    result = runner.invoke(app, ["redrive", str(letter.id), "--actor", "ops-bob", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ids"] == [letter.id]
    assert db.get(letter.id).status == "redriven"
    assert [(e.type, e.actor) for e in db.ops_events()] == [("DeadLettersRedriven", "ops-bob")]


def test_dlq_redrive__by_flag_and_stage__only_matching_letters(runner: CliRunner, db: Database) -> None:
    match, other_flag, other_stage = db.park(
        a_letter("relay", "a"), a_letter("relay", "b"), a_letter("projector", "a")
    )
    by_flag = runner.invoke(app, ["redrive", "--flag", "a", "--stage", "relay", "--json"])
    assert by_flag.exit_code == 0, by_flag.output
    assert json.loads(by_flag.stdout)["ids"] == [match.id]
    assert [db.get(x.id).status for x in (other_flag, other_stage)] == ["parked", "parked"]


@pytest.mark.parametrize("args", [[], ["1", "--stage", "relay"]])
def test_dlq_redrive__neither_or_both_id_and_filter__usage_error(runner: CliRunner, args: list[str]) -> None:
    assert runner.invoke(app, ["redrive", *args]).exit_code == 2


def test_dlq_redrive__unknown_id__exit_1(runner: CliRunner, db: Database) -> None:
    db.park(a_letter())
    assert runner.invoke(app, ["redrive", "55"]).exit_code == 1


def test_dlq_blocked__parked_letters__flags_per_stage(runner: CliRunner, db: Database) -> None:
    db.park(a_letter("relay", "b"), a_letter("relay", "a"), a_letter("projector", "c"))
    result = runner.invoke(app, ["blocked", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"relay": ["a", "b"], "projector": ["c"], "rollback": []}


def test_dlq_no_database_url__exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FLAGSTREAM_DATABASE_URL", raising=False)
    assert CliRunner().invoke(app, ["list"]).exit_code == 2


def test_dlq_list_and_redrive__rollback_stage__listed_then_redriven_for_the_worker(
    runner: CliRunner, db: Database
) -> None:
    rollback, _ = db.park(a_letter("rollback", "alert:fp-1", 1), a_letter("relay", "b", 1))
    listed = runner.invoke(app, ["list", "--stage", "rollback", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [item["id"] for item in json.loads(listed.stdout)["items"]] == [rollback.id]
    redriven = runner.invoke(app, ["redrive", str(rollback.id), "--reason", "fixed"])
    assert redriven.exit_code == 0, redriven.output
    assert db.get(rollback.id).status == "redriven"  # the rollback worker releases it
