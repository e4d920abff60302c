"""Schemathesis against the running platform's OpenAPI schema (a live uvicorn server on real Postgres,
Redis and Kafka): 0 server errors, 0 answers that break their own schema. A bounded number of
examples per operation keeps it within the suite's budget; the number of requests is printed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from events.kafka.adapter import ensure_topics, flag_events_spec, metric_alerts_spec
from events.store.db import apply_migrations, create_pool
from events.store.keys import ApiKeyStore
from runtime.settings import load_settings
from tests.integration.platform import module_database

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 20


@dataclass
class LiveApi:
    base_url: str
    key: str
    requests: int = 0
    failures: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _prepare(database: str, kafka_bootstrap: str, topic: str) -> str:
    await apply_migrations(database)
    await ensure_topics(
        kafka_bootstrap, [flag_events_spec(topic, partitions=1), metric_alerts_spec(topic + ".alerts")]
    )
    pool = await create_pool(database, min_size=1, max_size=1)
    try:
        return (await ApiKeyStore(pool).create("schemathesis", "admin"))[1]
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def live_api(database_url: str, redis_url: str, kafka_bootstrap: str) -> Iterator[LiveApi]:
    runner = asyncio.Runner()
    context = module_database(database_url)
    database = runner.run(context.__aenter__())
    suffix = uuid.uuid4().hex[:10]
    topic = f"test.schemathesis.{suffix}"
    try:
        key = runner.run(_prepare(database, kafka_bootstrap, topic))
        app_settings = load_settings(
            database_url=database,
            redis_url=redis_url,
            kafka_bootstrap_servers=kafka_bootstrap,
            flag_events_topic=topic,
            metric_alerts_topic=topic + ".alerts",
            redis_namespace=f"fs-{suffix}",
            log_json=False,
            log_requests=False,
            log_level="warning",
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(app_settings), host="127.0.0.1", port=port, log_config=None)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)  # waiting for uvicorn's started flag, bounded by the deadline
        try:
            yield LiveApi(f"http://127.0.0.1:{port}", key)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        runner.run(context.__aexit__(None, None, None))
        runner.close()


def test_openapi_schema__no_server_errors__answers_match_their_schema(
    live_api: LiveApi, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.key}"}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            live_api.requests += 1
            try:
                case.call_and_validate(
                    base_url=live_api.base_url,
                    headers=headers,
                    checks=[not_a_server_error, response_schema_conformance],
                    timeout=10,
                )
            except (AssertionError, FailureGroup, Failure) as e:
                live_api.failures.append(f"{case.operation.label}: {str(e)[:600]}")

        run()

    with capsys.disabled():
        print(f"\nschemathesis: {live_api.requests} requests over {len(operations)} operations")
    assert len(operations) >= 30
    assert live_api.requests >= len(operations) * 3
    assert not live_api.failures, "\n\n".join(live_api.failures[:10])
