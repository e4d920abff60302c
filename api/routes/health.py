"""Liveness, readiness and metrics.

``/readyz`` answers ``{"status"}`` to anyone; the details below only to a key with the operate
permission (ops, admin). ``/metrics`` needs ``Authorization: Bearer <FLAGSTREAM_METRICS_API_KEY>``
when that setting is set.

With details, ``/readyz`` names every dependency that is not ready: Postgres, Redis, Kafka (a metadata
round-trip, cached briefly), the projection (the newest appended event is visible in the
read model — checked on the newest event rather than on Kafka offsets, because tansu's high
watermark cannot be trusted after a multi-record batch), every circuit breaker of this process
(``breaker:<name>``) and each relay's last report from Postgres (``relay:<name>``).

Each failing check is *degraded* or *not ready*. Degraded (``200``): commands still land in
Postgres, publication or projection waits — Kafka unreachable, a relay whose breaker is not
closed or that holds flags behind dead letters, and the projection behind while Kafka or a relay
is failing. Anything else failing (Postgres, Redis, the API's own Postgres breaker...) is
``503`` ``not_ready``. The body: ``{"status", "checks": {name: "ok" | problem}, "not_ready":
[every failing check], "degraded": [the failing checks that only degrade]}``.
"""

from __future__ import annotations

import asyncio
import hmac
import time

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.auth import Permission
from api.deps import Services
from api.errors import ApiError
from events.relay.status import RelayStatus
from monitoring import metrics

__all__ = ["router"]

log = structlog.get_logger("api.health")

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
    bootstrap = services.kafka_bootstrap
    cached = _kafka_cache.get(bootstrap)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    from aiokafka import AIOKafkaClient  # type: ignore[attr-defined,unused-ignore]

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


def _describe_relay(status: RelayStatus) -> str | None:
    problems: list[str] = []
    if status.degraded:
        problems.append(f"breaker {status.breaker_state}")
    if status.blocked_flags:
        problems.append(f"{status.blocked_flags} flag(s) held behind dead letters")
    if not problems:
        return None
    problems.append(f"backlog {status.backlog}")
    if status.oldest_unpublished_at is not None:
        problems.append(f"oldest unpublished since {status.oldest_unpublished_at.isoformat()}")
    if status.last_error:
        problems.append(f"last error: {status.last_error}")
    if status.updated_at is not None:
        problems.append(f"reported at {status.updated_at.isoformat()}")
    return ", ".join(problems)


async def _check_relays(services: Services) -> dict[str, str]:
    try:
        statuses = await asyncio.wait_for(services.relay_status(), _CHECK_TIMEOUT)
    except Exception as e:
        return {"relay": f"unknown ({type(e).__name__})"}
    return {f"relay:{s.name}": _describe_relay(s) or "ok" for s in statuses}


def _check_breakers(services: Services) -> dict[str, str]:
    checks = dict(services.breaker_report())
    for name, breaker in services.breakers.items():
        state = str(breaker.state)
        if state == "open":
            state = f"open (trial in {breaker.retry_after():.1f}s)"
        checks[f"breaker:{name}"] = state
    return checks


def _only_degrades(name: str, kafka_side_failing: bool) -> bool:
    if name == "kafka" or name.startswith(("relay", "breaker:kafka", "breaker:relay")):
        return True
    return name == "projection" and kafka_side_failing


@router.get(
    "/readyz",
    summary="Ready to serve: Postgres, Redis reachable; Kafka, relays, breakers and projection reported",
)
async def readyz(request: Request, services: Services) -> JSONResponse:
    checks: dict[str, str] = {}
    pg, redis, kafka = await asyncio.gather(
        _check_postgres(services), _check_redis(services), _check_kafka(services)
    )
    checks["postgres"] = pg or "ok"
    checks["redis"] = redis or "ok"
    checks["kafka"] = kafka or "ok"
    if pg is None and redis is None:
        try:
            behind = await asyncio.wait_for(_check_projection(services), _CHECK_TIMEOUT)
            checks["projection"] = behind or "ok"
        except Exception as e:
            checks["projection"] = f"unknown ({type(e).__name__})"
    else:
        checks["projection"] = "unknown (a store is unreachable)"
    checks.update(_check_breakers(services))
    if pg is None:
        checks.update(await _check_relays(services))
    failing = sorted(k for k, v in checks.items() if v not in ("ok", "closed"))
    kafka_side_failing = any(_only_degrades(k, False) for k in failing)
    degraded = [k for k in failing if _only_degrades(k, kafka_side_failing)]
    status = "ready" if not failing else ("degraded" if degraded == failing else "not_ready")
    code = 200 if status in ("ready", "degraded") else 503  # degraded: commands still land in Postgres
    if not await _may_see_details(request, services):
        return JSONResponse(status_code=code, content={"status": status})
    return JSONResponse(
        status_code=code,
        content={"status": status, "checks": checks, "not_ready": failing, "degraded": degraded},
    )


async def _may_see_details(request: Request, services: Services) -> bool:
    """Details (check texts, breaker states, flag keys) only for a key with the operate permission."""
    header = request.headers.get("authorization")
    if header is None:
        return False
    try:
        principal = await services.auth.authenticate(header)
    except ApiError:
        raise  # a bad key is a 401, not a silent downgrade
    except Exception as e:  # the key store cannot answer: trust the key's last known role, else no details
        known = services.auth.last_known(header)
        log.warning("readyz.key_store_unavailable", error_class=type(e).__name__, known=known is not None)
        return known is not None and known.can(Permission.OPERATE)
    request.state.principal = principal
    return principal.can(Permission.OPERATE)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def prometheus_metrics(request: Request, services: Services) -> Response:
    expected = services.settings.metrics_api_key
    if expected:
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise ApiError(
                401,
                "unauthenticated",
                "/metrics needs Authorization: Bearer <metrics key>",
                details=[{"path": "headers.authorization", "message": "missing or wrong metrics key"}],
            )
    await services.refresh_gauges()
    body, content_type = metrics.render_latest()
    return Response(content=body, media_type=content_type)
