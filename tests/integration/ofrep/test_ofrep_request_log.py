"""An OFREP request's evaluation context reaches the request log with personal attributes masked."""

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
    return tmp_path_factory.mktemp("ofreplog") / "api.log"


@pytest.fixture(scope="module")
async def platform(
    database_url: str, redis_url: str, kafka_bootstrap: str, log_file: Path
) -> AsyncIterator[Platform]:
    # Without the fast lane: every OFREP request goes through api/routes/ofrep.py.
    async with (
        module_database(database_url) as database,
        start_platform(
            database,
            redis_url,
            kafka_bootstrap,
            run_workers=False,
            log_file=str(log_file),
            log_evaluation_sample_rate=1.0,  # every evaluation logged
            log_personal_attributes=["email"],
            evaluation_fast_lane=False,
        ) as p,
    ):
        yield p


def _text(log_file: Path) -> str:
    return log_file.read_text()


def _request_lines(log_file: Path, correlation_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in _text(log_file).splitlines() if line.strip()]
    return [x for x in lines if (x.get("event"), x.get("correlation_id")) == ("http.request", correlation_id)]


@pytest.mark.parametrize("path", ["/ofrep/v1/evaluate/flags/no-such-flag", "/ofrep/v1/evaluate/flags"])
async def test_ofrep__context_logged__email_masked(platform: Platform, log_file: Path, path: str) -> None:
    await platform.redis.sadd(f"{platform.settings.redis_namespace}:environments", "staging")
    context = {"targetingKey": "u-1", "email": "victim@example.com", "country": "NL"}
    cid = "ofrep-" + uuid.uuid4().hex

    headers = {"X-Request-Id": cid, "X-Flagstream-Environment": "staging"}

    response = await platform.request("POST", path, role="reader", json={"context": context}, headers=headers)

    assert response.status_code in (200, 404), response.text
    (line,) = _request_lines(log_file, cid)
    assert line["context"] == {"targetingKey": "u-1", "email": "[REDACTED]", "country": "NL"}
    assert "victim@example.com" not in _text(log_file)
