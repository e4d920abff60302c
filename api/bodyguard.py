"""Structural limits of JSON request bodies, checked before any route sees them.

Within the size limit a body can still make the API do too much or store what it should not: nesting
thousands deep, arrays of a hundred thousand items, megabyte-long object keys, NUL characters (which
Postgres cannot store in text and which make look-alike identifiers). :func:`inspect_json` answers the
first such problem as ``(field path, message)``; the middleware turns it into a ``422``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Message, Receive, Scope

__all__ = ["MAX_ARRAY_ITEMS", "MAX_DEPTH", "MAX_KEY_LENGTH", "guarded", "inspect_json", "read_all", "replay"]

MAX_DEPTH = 64
MAX_ARRAY_ITEMS = 10_000
MAX_KEY_LENGTH = 1_024


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return part if path == "$" else f"{path}.{part}"


def inspect_json(body: bytes) -> tuple[str, str] | None:
    """The first structural problem of ``body`` as ``(path, message)``; None when fine or not JSON at all
    (the route's own parsing then answers)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "depth" in str(e).lower() or "recursion" in str(e).lower():
            return "$", f"nested deeper than {MAX_DEPTH} levels"
        return None
    stack: list[tuple[Any, str, int]] = [(document, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        problem = _check_node(value, path, depth, stack)
        if problem is not None:
            return path, problem
    return None


def _check_node(value: Any, path: str, depth: int, stack: list[tuple[Any, str, int]]) -> str | None:
    """The problem of one node (its children pushed on ``stack``), or None."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return "contains a NUL character" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return "an object key contains a NUL character"
            if len(key) > MAX_KEY_LENGTH:
                return f"an object key is longer than {MAX_KEY_LENGTH} characters"
            stack.append((item, _join(path, key), depth + 1))
    elif isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            return f"more than {MAX_ARRAY_ITEMS} items"
        stack.extend((item, _join(path, i), depth + 1) for i, item in enumerate(value))
    return None


def guarded(scope: Scope) -> bool:
    """JSON bodies of the API checked for structure (api.bodyguard) before a route reads them."""
    path = scope.get("path", "")
    return path.startswith(("/api/", "/ofrep/")) and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE")


async def read_all(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body over once, then waits on the real one (disconnects)."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay
