"""The FastAPI application factory. Settings are loaded here (or passed in), never at import time.

Run it with ``uvicorn api.app:create_app --factory`` or ``flagstream run``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.console import install_console
from api.container import Container
from api.errors import install_error_handlers
from api.fastlane import EvaluationFastLane
from api.middleware import RequestContextMiddleware, RequestLogPolicy
from api.routes import alerts, audit, deadletters, evaluate, flagd, flags, health, ofrep
from api.routes.management import MANAGEMENT_ROUTERS
from monitoring.logging import configure_logging
from monitoring.sentry import configure_sentry
from runtime.settings import Settings, load_settings

__all__ = ["FlagstreamAPI", "create_app"]

log = structlog.get_logger("api.app")


class FlagstreamAPI(FastAPI):
    """FastAPI with the evaluation fast lane in front of everything (``api.fastlane``): an ordinary
    evaluation request is answered before Starlette's middleware stack is entered at all."""

    fast_lane: EvaluationFastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.fast_lane
        if lane is not None and scope["type"] == "http":
            await lane(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def routes_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The application without the fast lane: what the lane hands a request on to."""
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FlagstreamAPI:
    resolved = settings or load_settings()
    configure_logging(
        resolved.log_level,
        json=resolved.log_json,
        file=resolved.log_file,
        file_max_bytes=resolved.log_file_max_bytes,
        file_backups=resolved.log_file_backups,
    )
    configure_sentry(resolved.sentry_dsn, environment=resolved.sentry_environment)

    live: dict[str, Container] = {}  # the fast lane's view: the container while it is open, else nothing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = await Container.start(resolved)
        app.state.container = container
        live["container"] = container
        log.info("api.started", host=resolved.api_host, port=resolved.api_port)
        try:
            yield
        finally:
            live.pop("container", None)
            await container.close()
            log.info("api.stopped")

    app = FlagstreamAPI(
        title="Flagstream",
        version="0.1.0",
        description="Event-sourced feature flags: every change an immutable, hash-chained event.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    log_policy = RequestLogPolicy(
        enabled=resolved.log_requests,
        evaluation_sample_rate=resolved.log_evaluation_sample_rate,
        personal_attributes=frozenset(resolved.log_personal_attributes),
    )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=resolved.request_max_bytes,
        rate_limits=resolved.rate_limits_enabled,
        log_policy=log_policy,
    )
    if resolved.evaluation_fast_lane:
        app.fast_lane = EvaluationFastLane(
            app.routes_call,
            functools.partial(live.get, "container"),  # a dict look-up, not State.__getattr__
            max_body_bytes=resolved.request_max_bytes,
            rate_limits=resolved.rate_limits_enabled,
            log_policy=log_policy,
        )
    app.include_router(health.router)
    app.include_router(flags.router)
    app.include_router(evaluate.router)
    for router in (audit.router, deadletters.router, alerts.router, ofrep.router, flagd.router):
        app.include_router(router)
    for router in MANAGEMENT_ROUTERS:  # segments, keys, rules, import/export, bulk
        app.include_router(router)
    install_console(app)
    return app
