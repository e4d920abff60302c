"""Logging to a file rotates by size and keeps the configured number of old files."""

from __future__ import annotations

import json
from pathlib import Path

from monitoring.logging import configure_logging, get_logger, mask_headers, mask_personal


def test_log_file__rotates_at_max_bytes__keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "flagstream.log"
    configure_logging("INFO", json=True, file=str(path), file_max_bytes=2_000, file_backups=2)
    try:
        log = get_logger("test.rotation")
        for i in range(200):
            log.info("rotation.line", index=i, padding="x" * 40)
    finally:
        configure_logging("INFO", json=True)  # closes the file handler

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["flagstream.log", "flagstream.log.1", "flagstream.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2_000 for name in files)
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["event"] == "rotation.line" and last["index"] == 199


def test_log_level__debug_lines_dropped_at_info(tmp_path: Path) -> None:
    path = tmp_path / "level.log"
    configure_logging("warning", json=True, file=str(path))
    try:
        log = get_logger("test.level")
        log.info("level.info")
        log.warning("level.warning")
    finally:
        configure_logging("INFO", json=True)

    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert events == ["level.warning"]


def test_mask_headers__credentials_and_cookies() -> None:
    masked = mask_headers(
        {"authorization": "Bearer fs_abcdefghijklmnopqrstu", "cookie": "s=1", "user-agent": "curl/8"}
    )
    assert masked == {"authorization": "[REDACTED]", "cookie": "[REDACTED]", "user-agent": "curl/8"}


def test_mask_personal__case_insensitive_at_any_depth_and_keys_in_values() -> None:
    masked = mask_personal(
        {"Email": "a@b.c", "list": [{"email": "x"}], "note": "key fs_abcdefghijklmnopqrstu", "n": 3},
        ["email"],
    )
    assert masked == {
        "Email": "[REDACTED]",
        "list": [{"email": "[REDACTED]"}],
        "note": "key fs_[REDACTED]",
        "n": 3,
    }
