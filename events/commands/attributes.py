"""The attribute catalog: what rules test (names, inferred types, example values from the rules)
and what evaluated contexts carry (names and JSON types only — never a value, so no personal data
is kept). Context names and types live in one Redis hash ``{namespace}:attributes:contexts``
(attribute → JSON list of types), bounded to ``max_names`` attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.attributes import AttributeInfo, attributes_from_rules, context_attribute_types, merge_context_types
from core.model import Flag, Segment

__all__ = ["AttributeCatalog"]

_MAX_NAMES = 1000

log = structlog.get_logger("events.commands.attributes")


class AttributeCatalog:
    def __init__(self, redis: Redis, namespace: str, *, max_names: int = _MAX_NAMES) -> None:
        self._redis = redis
        self._key = f"{namespace}:attributes:contexts"
        self._max = max_names

    async def record_contexts(self, contexts: Sequence[Mapping[str, Any]]) -> None:
        """Remember the attribute names and value types of ``contexts`` (never their values).

        Best effort: Redis unavailable is logged, never the caller's failure (a preview still answers).
        """
        try:
            await self._record(contexts)
        except (RedisError, OSError) as e:
            log.warning("attributes.record_failed", error_class=type(e).__name__)

    async def _record(self, contexts: Sequence[Mapping[str, Any]]) -> None:
        seen: dict[str, set[str]] = {}
        for context in contexts:
            for name, kind in context_attribute_types(context).items():
                seen.setdefault(name, set()).add(kind)
        if not seen:
            return
        stored = await self._read()
        room = self._max - len(stored)
        updates: dict[str, str] = {}
        for name in sorted(seen):
            if name not in stored:
                if room <= 0:
                    continue  # the catalog is full: known names still gain types, new ones are dropped
                room -= 1
            merged = sorted(set(stored.get(name, ())) | seen[name])
            if merged != sorted(stored.get(name, ())):
                updates[name] = json.dumps(merged)
        if updates:
            await self._redis.hset(self._key, items=[x for pair in updates.items() for x in pair])

    async def describe(self, flags: Iterable[Flag], segments: Iterable[Segment]) -> list[dict[str, Any]]:
        """Every known attribute, sorted by name."""
        found: dict[str, AttributeInfo] = attributes_from_rules(flags, segments)
        merge_context_types(found, await self._read())
        return [found[name].to_dict() for name in sorted(found)]

    async def _read(self) -> dict[str, list[str]]:
        raw = await self._redis.hgetall(self._key)
        out: dict[str, list[str]] = {}
        for name, value in raw.items():
            text = name.decode() if isinstance(name, bytes) else str(name)
            try:
                kinds = json.loads(value)
            except ValueError:
                continue
            if isinstance(kinds, list):
                out[text] = [str(k) for k in kinds]
        return out
