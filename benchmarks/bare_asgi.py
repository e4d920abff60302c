"""The ceiling for HTTP evaluation on this machine: a bare ASGI app that parses the same JSON
request and answers a JSON object of the same shape, with no framework, auth or evaluation.

``benchmarks/http.py`` serves it with the same uvicorn settings as the API and drives both with
the same load generator, so the ratio between the two is the cost of everything we add.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

__all__ = ["app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
_HEADERS = [(b"content-type", b"application/json")]


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = orjson.loads(body) if body else {}
    context = request.get("context", {})
    answer = {
        "key": "bench",
        "value": bool(context.get("targetingKey")),
        "variant": "on",
        "reason": "TARGETING_MATCH",
        "metadata": {"version": 1},
    }
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(answer)})
