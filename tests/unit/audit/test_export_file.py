"""verify_export over files written by EventWriter, in both formats."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from events.audit.export import EventWriter, verify_export
from tests.integration.audit.support import apply_commands, checkout_story


def _write(path: Path, fmt: str, raws: list[bytes]) -> None:
    out = io.StringIO()
    writer = EventWriter(out, fmt)  # type: ignore[arg-type]
    for raw in raws:
        writer.write(orjson.loads(raw), raw.decode())
    path.write_text(out.getvalue(), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_verify_export__written_file__ok(tmp_path: Path, fmt: str) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    path = tmp_path / f"log.{fmt}"
    _write(path, fmt, [e.to_json().encode() for e in events])

    report = verify_export(path)

    assert (report.events, report.ok) == (4, True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_verify_export__line_dropped__gap(tmp_path: Path, fmt: str) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    path = tmp_path / f"log.{fmt}"
    _write(path, fmt, [e.to_json().encode() for e in (events[0], events[1], events[3])])

    report = verify_export(path)

    assert report.first_break is not None
    assert (report.first_break.problem, report.first_break.version) == ("gap", 3)
