"""One JSON line per request, secrets and personal context attributes masked, evaluations sampled."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("requestlog") / "api.log"


@pytest.fixture(scope="module")
async def platform(
    database_url: str, redis_url: str, kafka_bootstrap: str, log_file: Path
) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(
            database,
            redis_url,
            kafka_bootstrap,
            run_workers=False,
            log_file=str(log_file),
            log_evaluation_sample_rate=0.0,
            log_personal_attributes=["email", "phone"],
        ) as p,
    ):
        yield p


def _request_lines(log_file: Path, correlation_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in _text(log_file).splitlines() if line.strip()]
    wanted = ("http.request", correlation_id)
    return [x for x in lines if (x.get("event"), x.get("correlation_id")) == wanted]


def _text(log_file: Path) -> str:
    return log_file.read_text()


async def test_request__one_line_with_route_template_sizes_principal_and_secrets_masked(
    platform: Platform, log_file: Path
) -> None:
    cid = "req-" + uuid.uuid4().hex
    response = await platform.request(
        "GET",
        "/api/v1/flags/no-such-flag",
        role="reader",
        headers={"X-Request-Id": cid, "Cookie": "session=very-secret-cookie"},
    )

    lines = _request_lines(log_file, cid)
    assert response.status_code == 404
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/flags/{key}"
    assert line["status"] == 404
    assert line["duration_ms"] > 0
    assert line["response_bytes"] == len(response.content)
    assert line["request_bytes"] == 0
    assert line["principal"] == "test-reader"
    assert line["headers"]["authorization"] == "[REDACTED]"
    assert line["headers"]["cookie"] == "[REDACTED]"
    text = _text(log_file)
    assert platform.keys["reader"] not in text
    assert "very-secret-cookie" not in text


async def test_evaluation__personal_attributes_masked__successes_sampled_out(
    platform: Platform, log_file: Path
) -> None:
    await platform.redis.sadd(f"{platform.settings.redis_namespace}:environments", "staging")
    context = {"email": "victim@example.com", "country": "NL", "profile": {"phone": "+31 6 1234"}}
    served_id, refused_id = "ok-" + uuid.uuid4().hex, "nf-" + uuid.uuid4().hex

    served = await platform.request(
        "POST", "/api/v1/evaluate", role="reader", json={"environment": "staging", "context": context},
        headers={"X-Request-Id": served_id},
    )
    refused = await platform.request(
        "POST", "/api/v1/evaluate", role="reader", json={"environment": "nowhere", "context": context},
        headers={"X-Request-Id": refused_id},
    )

    assert served.status_code == 200, served.text
    assert refused.status_code == 404, refused.text
    assert _request_lines(log_file, served_id) == []  # sample rate 0: successful evaluations not logged
    (line,) = _request_lines(log_file, refused_id)  # errors always are
    assert line["context"] == {
        "email": "[REDACTED]",
        "country": "NL",
        "profile": {"phone": "[REDACTED]"},
    }
    assert "victim@example.com" not in _text(log_file)
