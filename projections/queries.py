"""Reads of the read model for the HTTP API (``GET /api/v1/flags``) and readiness checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.model import Flag
from core.state import FlagState
from projections.connection import require_text_client
from projections.documents import decode_env_doc, is_segment_stream
from projections.errors import ReadModelUnavailable
from projections.keys import Keyspace

__all__ = ["FlagView", "ReadModelQueries"]

_SCAN_COUNT = 500


@dataclass(frozen=True, slots=True)
class FlagView:
    """A flag as the read model holds it: whole (no environment given) or one environment's slice."""

    key: str
    version: int
    flag: Flag


class ReadModelQueries:
    def __init__(self, client: Redis, keys: Keyspace | None = None) -> None:
        self._client = require_text_client(client)
        self.keys = keys or Keyspace()

    async def get_flag(self, flag_key: str) -> FlagState | None:
        """The full projected state of one flag (every environment), or ``None`` if unknown."""
        try:
            raw = await self._client.get(self.keys.state(flag_key))
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading a flag") from e
        if raw is None or is_segment_stream(flag_key):
            return None
        state = FlagState.model_validate_json(raw)
        return state if state.flag is not None else None

    async def list_flags(self, environment: str | None = None) -> list[FlagView]:
        """Every projected flag, sorted by key; with ``environment``, that environment's documents."""
        try:
            if environment is not None:
                docs = await self._client.hgetall(self.keys.env_flags(environment))
                views = [_view_of_doc(str(key), str(raw)) for key, raw in docs.items()]
            else:
                views = [v async for v in self._scan_states()]
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable listing flags") from e
        return sorted((v for v in views if v is not None), key=lambda v: v.key)

    async def environments(self) -> list[str]:
        try:
            return sorted(str(e) for e in await self._client.smembers(self.keys.environments))
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable listing environments") from e

    async def checkpoints(self, group: str, topic: str) -> dict[int, int]:
        """Partition -> next offset the projector group will read (its Redis checkpoints)."""
        try:
            keys = [k async for k in self._client.scan_iter(self.keys.checkpoint_pattern(group, topic))]
            values = await self._client.mget(keys) if keys else []
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable("redis unavailable reading checkpoints") from e
        return {int(str(k).rsplit(":", 1)[1]): int(v) for k, v in zip(keys, values, strict=True) if v}

    async def _scan_states(self) -> AsyncIterator[FlagView]:
        async for key in self._client.scan_iter(self.keys.state_pattern(), count=_SCAN_COUNT):
            stream = self.keys.stream_of_state_key(str(key))
            if is_segment_stream(stream):
                continue
            raw = await self._client.get(key)
            if raw is None:
                continue
            state = FlagState.model_validate_json(raw)
            if state.flag is not None:
                yield FlagView(state.key, state.version, state.flag)


def _view_of_doc(key: str, raw: str) -> FlagView | None:
    try:
        version, flag = decode_env_doc(raw)
    except (ValidationError, ValueError, KeyError):
        return None
    return FlagView(key, version, flag)
