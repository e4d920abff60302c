"""monitoring.logging: JSON lines with context, stdlib routed through them, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from monitoring.logging import (
    REDACTED,
    bind_context,
    bound_context,
    clear_context,
    configure_logging,
    get_logger,
    redact_secrets,
    redact_text,
)

API_KEY = "fs_Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Configure logging into a buffer for one test, then restore the previous configuration."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_structlog = structlog.get_config()
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    try:
        yield stream
    finally:
        clear_context()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_line__structlog_call__is_one_json_object_with_standard_keys(log_stream: io.StringIO) -> None:
    get_logger("flagstream.test").info("relay.published", count=3, lag_ms=12.5)
    [line] = _lines(log_stream)
    assert line["event"] == "relay.published"
    assert line["count"] == 3 and line["lag_ms"] == 12.5
    assert line["level"] == "info"
    assert line["logger"] == "flagstream.test"
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_log_line__context_bound__appears_in_every_line_until_cleared(log_stream: io.StringIO) -> None:
    log = get_logger("flagstream.test")
    bind_context(correlation_id="corr-1")
    log.info("first")
    logging.getLogger("uvicorn.error").warning("second")
    clear_context()
    log.info("third")
    first, second, third = _lines(log_stream)
    assert first["correlation_id"] == "corr-1"
    assert second["correlation_id"] == "corr-1"
    assert "correlation_id" not in third


def test_log_line__bound_context_block__binds_only_inside(log_stream: io.StringIO) -> None:
    log = get_logger("flagstream.test")
    with bound_context(request_id="r-9"):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(log_stream)
    assert inside["request_id"] == "r-9"
    assert "request_id" not in outside


def test_stdlib_logger__third_party_record__rendered_as_json_with_logger_name(
    log_stream: io.StringIO,
) -> None:
    aiokafka_log = logging.getLogger("aiokafka.conn")
    aiokafka_log.error("connection to %s lost", "kafka:9092")
    [line] = _lines(log_stream)
    assert line == line | {
        "event": "connection to kafka:9092 lost",
        "level": "error",
        "logger": "aiokafka.conn",
    }


def test_configure_logging__uvicorn_own_handlers__are_replaced_by_propagation() -> None:
    uvicorn_log = logging.getLogger("uvicorn.access")
    uvicorn_log.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_log.propagate = False
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("info", stream=stream)
        uvicorn_log.info("GET /healthz 200")
        assert uvicorn_log.handlers == [] and uvicorn_log.propagate
        assert json.loads(stream.getvalue())["event"] == "GET /healthz 200"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_log_level__below_threshold__is_not_written() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("warning", stream=stream)
        get_logger("flagstream.quiet").info("not.written")
        get_logger("flagstream.quiet").warning("written")
        assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == ["written"]
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "api_key",
        "apiKey",
        "x-api-key",
        "password",
        "db_password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "cookie",
        "credentials",
        "private_key",
    ],
)
def test_redaction__sensitive_key_name__value_replaced(log_stream: io.StringIO, key: str) -> None:
    get_logger("flagstream.test").info("request", **{key: "hunter2-very-secret"})
    output = log_stream.getvalue()
    assert "hunter2" not in output
    assert _lines(log_stream)[0][key] == REDACTED


def test_redaction__identifiers_of_secrets__are_kept(log_stream: io.StringIO) -> None:
    get_logger("flagstream.test").info("auth.ok", key_id="k-42", api_key_id="k-43", flag_key="new-checkout")
    [line] = _lines(log_stream)
    assert (line["key_id"], line["api_key_id"], line["flag_key"]) == ("k-42", "k-43", "new-checkout")


def test_redaction__api_key_and_bearer_inside_text__scrubbed_everywhere(log_stream: io.StringIO) -> None:
    log = get_logger("flagstream.test")
    careless_message = f"header was Bearer {API_KEY}"  # what a careless caller might log
    log.info(
        careless_message,
        note=f"client sent {API_KEY}",
        args=["x", f"Bearer {API_KEY}"],
        headers={"Authorization": f"Bearer {API_KEY}", "accept": "json"},
    )
    logging.getLogger("uvicorn.error").warning("bad key %s", API_KEY)
    output = log_stream.getvalue()
    assert API_KEY not in output
    assert API_KEY[3:] not in output
    first, second = _lines(log_stream)
    assert first["headers"] == {"Authorization": REDACTED, "accept": "json"}
    assert first["note"] == f"client sent fs_{REDACTED}"
    assert second["event"] == f"bad key fs_{REDACTED}"


def test_redaction__exception_traceback_with_secret__scrubbed(log_stream: io.StringIO) -> None:
    try:
        raise ValueError(f"rejected Bearer {API_KEY}")
    except ValueError:
        get_logger("flagstream.test").exception("failed")
    [line] = _lines(log_stream)
    assert "ValueError" in line["exception"]
    assert API_KEY not in log_stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://flagstream:s3cr3t@db:5432/flagstream",
            f"postgresql://flagstream:{REDACTED}@db:5432/flagstream",
        ),
        ("redis://:pw@redis:6379/0", f"redis://:{REDACTED}@redis:6379/0"),
        ("Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("header fs_version and fs_schema_version", "header fs_version and fs_schema_version"),
        ("kafka:9092", "kafka:9092"),
    ],
)
def test_redact_text__shapes__secrets_replaced_and_harmless_text_kept(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_secrets__processor__leaves_internal_keys_and_none_alone() -> None:
    record = object()
    event = {"event": "x", "token": None, "_record": record}
    out = redact_secrets(None, "info", event)
    assert out["token"] is None and out["_record"] is record


def test_redaction__stdlib_exception_with_secret__scrubbed(log_stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"connect postgresql://app:pa55word@db/flagstream with Bearer {API_KEY}")
    except RuntimeError:
        logging.getLogger("asyncpg.pool").exception("pool failed")
    [line] = _lines(log_stream)
    assert "RuntimeError" in line["exception"]
    assert "pa55word" not in log_stream.getvalue() and API_KEY not in log_stream.getvalue()
