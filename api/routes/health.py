"""Liveness, readiness and metrics.

``/readyz`` names every dependency that is not ready: Postgres, Redis, Kafka (a metadata
round-trip, cached briefly) and the projection (the newest appended event is visible in the
read model — checked on the newest event rather than on Kafka offsets, because tansu's high
watermark cannot be trusted after a multi-record batch).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import Services
from monitoring import metrics

__all__ = ["router"]

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT = 2.0
_kafka_cache: dict[str, tuple[float, str | None]] = {}


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_postgres(services: Services) -> str | None:
    try:
        await asyncio.wait_for(services.pool.fetchval("SELECT 1"), _CHECK_TIMEOUT)
    except Exception as e:
        return f"unreachable ({type(e).__name__})"
    return None


async def _check_redis(services: Services) -> str | None:
    try:
        await asyncio.wait_for(services.redis.ping(), _CHECK_TIMEOUT)
    except Exception as e:
        return f"unreachable ({type(e).__name__})"
    return None


async def _check_kafka(services: Services) -> str | None:
    bootstrap = services.settings.kafka_bootstrap_servers
    cached = _kafka_cache.get(bootstrap)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    from aiokafka import AIOKafkaClient  # type: ignore[attr-defined]

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    problem: str | None = None
    try:
        await asyncio.wait_for(client.bootstrap(), _CHECK_TIMEOUT)
    except Exception as e:
        problem = f"unreachable ({type(e).__name__})"
    finally:
        await client.close()
    _kafka_cache[bootstrap] = (time.monotonic() + 2.0, problem)
    return problem


async def _check_projection(services: Services) -> str | None:
    row = await services.pool.fetchrow("SELECT flag_key, version FROM events ORDER BY seq DESC LIMIT 1")
    if row is None:
        return None
    projected = await services.read_model.stored_version(row["flag_key"])
    if projected < row["version"]:
        return f"behind: {row['flag_key']} v{row['version']} not yet in the read model (has v{projected})"
    return None


@router.get("/readyz", summary="Ready to serve: Postgres, Redis, Kafka reachable; projection caught up")
async def readyz(services: Services) -> JSONResponse:
    checks: dict[str, Any] = {}
    pg, redis, kafka = await asyncio.gather(
        _check_postgres(services), _check_redis(services), _check_kafka(services)
    )
    checks["postgres"] = pg or "ok"
    checks["redis"] = redis or "ok"
    checks["kafka"] = kafka or "ok"
    if pg is None and redis is None:
        try:
            checks["projection"] = await asyncio.wait_for(_check_projection(services), _CHECK_TIMEOUT) or "ok"
        except Exception as e:
            checks["projection"] = f"unknown ({type(e).__name__})"
    else:
        checks["projection"] = "unknown (a store is unreachable)"
    checks.update(services.breaker_report())
    failing = {k: v for k, v in checks.items() if v not in ("ok", "closed")}
    status = (
        "ready"
        if not failing
        else ("degraded" if set(failing) <= {"kafka", "breaker:kafka"} else "not_ready")
    )
    code = 200 if status in ("ready", "degraded") else 503  # degraded: commands still land in Postgres
    return JSONResponse(
        status_code=code, content={"status": status, "checks": checks, "not_ready": sorted(failing)}
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def prometheus_metrics(services: Services) -> Response:
    pool = services.pool
    metrics.set_db_pool("api", in_use=pool.get_size() - pool.get_idle_size(), size=pool.get_max_size())
    body, content_type = metrics.render_latest()
    return Response(content=body, media_type=content_type)
