"""Every projected flag for the console's list, read in batches (SCAN + MGET), sorted by key.

The API's ``GET /api/v1/flags`` without an environment reads one key per round trip; the console lists
every flag (an environment only changes the state column), so it reads the states in batches of 1,000.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.state import FlagState
from projections.documents import is_segment_stream
from projections.errors import ReadModelUnavailable
from projections.keys import Keyspace
from projections.queries import FlagView

__all__ = ["list_all_flags"]

_BATCH = 1000


async def list_all_flags(client: Redis, keys: Keyspace) -> list[FlagView]:
    views: list[FlagView] = []
    try:
        batch: list[str] = []
        async for key in client.scan_iter(keys.state_pattern(), count=_BATCH):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if not is_segment_stream(keys.stream_of_state_key(name)):
                batch.append(name)
            if len(batch) >= _BATCH:
                views += await _read(client, batch)
                batch = []
        views += await _read(client, batch)
    except (RedisError, OSError) as e:
        raise ReadModelUnavailable("redis unavailable listing flags") from e
    return sorted(views, key=lambda v: v.key)


async def _read(client: Redis, names: list[str]) -> list[FlagView]:
    if not names:
        return []
    out: list[FlagView] = []
    for raw in await client.mget(names):
        if raw is None:
            continue
        state = FlagState.model_validate_json(raw)
        if state.flag is not None:
            out.append(FlagView(state.key, state.version, state.flag))
    return out
