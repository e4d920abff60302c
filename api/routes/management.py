"""The management API's routers (issue 10), registered together by the app factory."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import bulk, keys, rules, segments, transfer

__all__ = ["MANAGEMENT_ROUTERS"]

MANAGEMENT_ROUTERS: tuple[APIRouter, ...] = (
    segments.router,
    keys.router,
    rules.router,
    transfer.router,
    bulk.router,
)
