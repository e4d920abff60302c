"""The console's routes, one module per area, gathered under ``/ui``."""

from __future__ import annotations

from fastapi import APIRouter

from api.console.routes import editor, flags, history, manage, ops, signin

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (signin, flags, editor, history, ops, manage):
    router.include_router(_module.router, prefix="/ui")
