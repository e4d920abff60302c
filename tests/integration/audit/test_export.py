"""export: JSON Lines and CSV, cut by time, round-trip through verify_export."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from events.audit import StreamSettings, export_log, verify_export
from tests.integration.audit.support import T0, apply_commands, checkout_story, create_topic, produce

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export__whole_log__round_trips_through_verify(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, fmt: str
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    others, _ = apply_commands("other-flag", checkout_story("other-flag"))
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, [*events, events[1], *others])
    path = tmp_path / f"export.{fmt}"

    with path.open("w", encoding="utf-8", newline="") as out:
        written = await export_log(StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300), out, fmt=fmt)  # type: ignore[arg-type]
    checked = verify_export(path)

    assert (written.events, written.skipped_redeliveries, written.ok) == (8, 1, True)
    assert (checked.events, checked.ok) == (8, True)


async def test_export__cut_by_time_then_one_line_altered__verify_names_it(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    events, _ = apply_commands("new-checkout", checkout_story())
    await create_topic(kafka_bootstrap, unique_topic)
    await produce(kafka_bootstrap, unique_topic, events)
    out = io.StringIO()

    written = await export_log(
        StreamSettings(kafka_bootstrap, unique_topic, idle_ms=300),
        out,
        since=T0 + timedelta(minutes=30),
        until=T0 + timedelta(minutes=150),
    )
    lines = out.getvalue().splitlines()
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = verify_export(path)
    path.write_text("\n".join([lines[0], lines[1].replace('"alice"', '"mallory"')]) + "\n", encoding="utf-8")
    altered = verify_export(path)

    assert written.events == 2 and whole.ok
    assert altered.first_break is not None
    assert (altered.first_break.problem, altered.first_break.version) == ("tampered", 3)
