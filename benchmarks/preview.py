"""Rules preview benchmark: ``python benchmarks/preview.py [--rounds N]``.

Issue 10 asks: 1,000 contexts previewed in under 200 ms. This measures ``POST /api/v1/rules/preview``
end to end in one process (ASGI, no network): JSON parsing and validation of the request, loading
the flag and the segments from Postgres, compiling the unsaved configuration, evaluating every
context, recording attribute names/types in Redis, and serialising the answer. The configuration
has a target list, a segment rule, a nested AND/OR/NOT rule with a regex and a 50/50 rollout.

It uses DATABASE_URL / REDIS_URL when set, otherwise starts throw-away servers (Kafka unused).
Prints p50 / p95 / max over the rounds (after two warm-up rounds) and the service call alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from api.app import create_app
from api.routes._manage import rules_service
from core.commands import CreateFlag, CreateSegment
from core.model import Flag, Segment
from events.commands.service import CommandMeta
from events.store.keys import ApiKeyStore
from runtime.devstack import Stack
from runtime.settings import load_settings

CONTEXTS = 1000
CONFIG: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": [f"vip-{i}" for i in range(50)]}],
    "rules": [
        {
            "id": "beta",
            "when": {"attribute": "k", "op": "in_segment", "values": ["beta"]},
            "serve": {"variation": "on"},
        },
        {
            "id": "eu-staff",
            "when": {
                "all": [
                    {"attribute": "country", "op": "in", "values": ["FR", "DE", "IT", "ES"]},
                    {
                        "any": [
                            {"attribute": "email", "op": "matches", "values": ["@corp\\.example$"]},
                            {"attribute": "age", "op": "gte", "values": [30]},
                        ]
                    },
                    {"not": {"attribute": "plan", "op": "eq", "values": ["free"]}},
                ]
            },
            "serve": {"variation": "on"},
        },
        {
            "id": "us",
            "when": {"attribute": "country", "op": "eq", "values": ["US"]},
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        },
    ],
    "default": {"variation": "off"},
}


def _contexts() -> list[dict[str, Any]]:
    countries = ["US", "FR", "DE", "GB", "JP"]
    return [
        {
            "targetingKey": f"user-{i}",
            "country": countries[i % 5],
            "age": 18 + i % 50,
            "email": f"u{i}@{'corp' if i % 7 == 0 else 'mail'}.example",
            "plan": "pro" if i % 3 else "free",
        }
        for i in range(CONTEXTS)
    ]


async def _run(database_url: str, redis_url: str, rounds: int) -> None:
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap_servers="127.0.0.1:1",
        redis_namespace="bench-preview",
        log_json=True,
        log_level="warning",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        container = app.state.container
        admin = (await ApiKeyStore(container.pool).create("bench", "admin"))[1]
        meta = CommandMeta(actor="bench")
        flag_key = f"bench-{os.getpid()}"
        await container.execute(CreateFlag(flag_key=flag_key, flag=Flag(key=flag_key)), meta)
        segment = Segment(key="beta", included=tuple(f"user-{i}" for i in range(0, CONTEXTS, 10)))
        if (await container.commands.load_segment("beta")).segment is None:
            await container.execute(CreateSegment(segment_key="beta", segment=segment), meta)
        contexts = _contexts()
        body = {"flag": flag_key, "environment": "production", "config": CONFIG, "contexts": contexts}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            timings: list[float] = []
            service: list[float] = []
            for i in range(rounds + 2):
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/rules/preview", json=body, headers={"Authorization": f"Bearer {admin}"}
                )
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                assert sum(response.json()["counts"].values()) == CONTEXTS
                started = time.perf_counter()
                await rules_service(container).preview(flag_key, "production", CONFIG, contexts, _now())
                service_ms = (time.perf_counter() - started) * 1000
                if i >= 2:
                    timings.append(elapsed)
                    service.append(service_ms)
        counts = response.json()["counts"]
    timings.sort()
    print(
        f"preview of {CONTEXTS} contexts over HTTP (ASGI), {rounds} rounds: "
        f"p50 {statistics.median(timings):.1f} ms, p95 {timings[int(len(timings) * 0.95) - 1]:.1f} ms, "
        f"max {timings[-1]:.1f} ms; service call alone p50 {statistics.median(service):.1f} ms",
        f"counts {counts}",
    )


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    stack = None
    if not (database_url and redis_url):
        stack = Stack.start(
            Path(tempfile.mkdtemp(prefix="bench-preview-")),
            durable=False,
            database_url=database_url,
            redis_url=redis_url,
            kafka_bootstrap="127.0.0.1:1",
            stop_at_exit=True,
        )
        database_url, redis_url = stack.database_url, stack.redis_url
    try:
        asyncio.run(_run(database_url, redis_url, args.rounds))
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    main()
