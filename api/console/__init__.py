"""The admin console, served by the API at ``/ui``: server-rendered Jinja2 pages, htmx, a little plain JS.

:func:`install_console` adds its routes, its session store and its templates to the app (called by the
app factory; nothing is built at import time).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from api.console.deps import SignInRequired
from api.console.routes import router

__all__ = ["install_console"]

_HERE = Path(__file__).parent


def install_console(app: FastAPI) -> None:
    app.state.console_templates = Jinja2Templates(directory=str(_HERE / "templates"))

    async def _to_sign_in(request: Request, error: Exception) -> RedirectResponse:
        assert isinstance(error, SignInRequired)
        return RedirectResponse(f"/ui/signin?next={quote(error.next_path)}", status_code=303)

    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.include_router(router)
