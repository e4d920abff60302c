"""The request-size limit: a chunked body (no Content-Length) over the limit is a 413 like a declared one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware

LIMIT = 1024


class _Body(BaseModel):
    value: str


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=LIMIT)

    @app.post("/api/v1/echo")
    async def echo(body: _Body) -> dict[str, int]:
        return {"length": len(body.value)}

    return app


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"value": "'
    sent = 0
    while sent < total:
        yield b"x" * 256
        sent += 256
    yield b'"}'


async def test_body__chunked_over_limit__is_413_like_a_declared_one() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        chunked = await client.post(
            "/api/v1/echo", content=_chunks(LIMIT * 4), headers={"content-type": "application/json"}
        )
        declared = await client.post("/api/v1/echo", content=b'{"value": "' + b"x" * LIMIT * 4 + b'"}')
    assert "content-length" not in chunked.request.headers
    assert declared.status_code == 413
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error"]["code"] == "payload_too_large"


async def test_body__chunked_within_limit__is_served() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/api/v1/echo", content=_chunks(256), headers={"content-type": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"length": 256}
