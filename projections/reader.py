"""The evaluators' in-memory snapshot of one environment, kept fresh from Redis.

``start()`` subscribes to the environment's change channel (and the segments channel) *first*,
then loads the whole hash in one transaction and compiles every flag. Afterwards:

- a change notice ``{"flag_key", "version", "rev"}`` whose ``rev`` is the next one re-reads only
  that field; a notice that skips a revision, or a ``{"reload": true}`` notice (sent by a rebuild
  switch), triggers a full resync;
- every ``poll_interval`` seconds the revision counters are read: a notice that was missed is
  caught this way (full resync when the counter moved);
- when Redis is unreachable the reader keeps serving the last snapshot, reports
  ``healthy = False`` and ``staleness_seconds`` (time since the last successful sync), and
  reconnects by itself with a bounded backoff (resyncing, since notices were lost meanwhile).

Evaluation is pure and synchronous on the current :class:`CompiledEnvironment`; it never waits
for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from core.evaluation import CompiledEnvironment, EvaluationResult, compile_environment
from core.model import Flag, Segment
from monitoring import metrics
from projections.connection import make_redis, require_text_client
from projections.documents import decode_env_doc, decode_segment_doc
from projections.errors import ReadModelUnavailable
from projections.keys import DEFAULT_NAMESPACE, Keyspace

__all__ = ["EnvironmentReader"]

_log = structlog.get_logger("projections.reader")
_NOTICE_GRACE = 0.05  # seconds a notice may take to arrive after its revision is visible
_MAX_COALESCED = 1_000  # notices applied together, at most
_FULL_RECOMPILE_AFTER = 16  # more changed flags than this in one resync: compile the environment afresh


class EnvironmentReader:
    """One environment's compiled flags, refreshed from change notices and revision polling."""

    def __init__(
        self,
        redis: str | Redis,
        environment: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        poll_interval: float = 1.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.environment = environment
        self.keys = Keyspace(namespace)
        self._owns_client = isinstance(redis, str)
        self._client: Redis = (
            make_redis(redis, socket_timeout=2.0, retries=0)
            if isinstance(redis, str)
            else require_text_client(redis)
        )
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._compiled = compile_environment((), environment, {})
        self._raw_flags: dict[str, str] = {}
        self._sources: dict[str, tuple[Flag, int]] = {}
        self._raw_segments: dict[str, str] = {}
        self._segments: dict[str, Segment] = {}
        self._rev = 0
        self._segments_rev = 0
        self._last_sync: float | None = None
        self._awaited: tuple[int, int, float] | None = None  # revisions seen by a poll, and when
        self._connected = False
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot once (raises :class:`ReadModelUnavailable` if Redis cannot be reached)."""
        try:
            await self._connect()
        except (RedisError, OSError) as e:
            raise ReadModelUnavailable(f"cannot load environment {self.environment!r} from redis") from e
        self._task = asyncio.create_task(self._follow(), name=f"reader:{self.environment}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_pubsub()
        if self._owns_client:
            await self._client.aclose()

    # --- what evaluators use ---------------------------------------------------------------

    @property
    def snapshot(self) -> CompiledEnvironment:
        return self._compiled

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def healthy(self) -> bool:
        return self._connected and self.staleness_seconds <= 3 * self._poll_interval + 1.0

    @property
    def staleness_seconds(self) -> float:
        """Seconds since the snapshot was last confirmed up to date (``inf`` before the first load)."""
        if self._last_sync is None:
            return float("inf")
        return max(time.monotonic() - self._last_sync, 0.0)

    def evaluate(self, flag_key: str, context: Mapping[str, Any], now: datetime) -> EvaluationResult:
        return self._compiled.evaluate(flag_key, context, now)

    def evaluate_all(self, context: Mapping[str, Any], now: datetime) -> dict[str, EvaluationResult]:
        return self._compiled.evaluate_all(context, now)

    def version_of(self, flag_key: str) -> int | None:
        return self._compiled.version_of(flag_key)

    async def wait_for_version(self, flag_key: str, version: int, within: float) -> bool:
        """True once the snapshot holds ``flag_key`` at ``version`` or later; False after ``within`` s."""
        deadline = time.monotonic() + within
        while (self.version_of(flag_key) or 0) < version:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=remaining)
        return True

    # --- following Redis -------------------------------------------------------------------

    async def _connect(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.keys.env_channel(self.environment), self.keys.segments_channel)
            await self._resync()
        except BaseException:
            await pubsub.aclose()
            raise
        self._pubsub = pubsub
        self._connected = True
        self._next_poll = time.monotonic() + self._poll_interval

    async def _follow(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    _log.info("reader.reconnected", environment=self.environment, rev=self._rev)
                await self._follow_once()
                backoff = 0.05
            except Exception as e:  # the follower must never die: serve stale, retry
                if isinstance(e, RedisError | OSError):
                    if self._connected:
                        _log.warning("reader.redis_unavailable", environment=self.environment, error=str(e))
                else:
                    _log.exception("reader.unexpected_error", environment=self.environment)
                self._connected = False
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            metrics.set_reader_staleness(self.environment, min(self.staleness_seconds, 1e9))

    async def _follow_once(self) -> None:
        assert self._pubsub is not None
        wait = max(self._next_poll - time.monotonic(), 0.0)
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        notices: list[tuple[str, str]] = []
        while message is not None and len(notices) < _MAX_COALESCED:
            if message.get("type") == "message":
                notices.append((str(message["channel"]), str(message["data"])))
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
        if message is not None and message.get("type") == "message":
            notices.append((str(message["channel"]), str(message["data"])))
        if notices:
            await self._on_notices(notices)
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + await self._poll()

    async def _poll(self) -> float:
        """Compare the revision counters with the snapshot; returns the delay until the next poll.

        A counter ahead of the snapshot may only mean its notice is in flight: the reader looks
        again after a short grace, and resyncs only if the notices did not catch up meanwhile.
        """
        polled_at = time.monotonic()
        raw_rev, raw_segments_rev = await self._client.mget(
            self.keys.env_rev(self.environment), self.keys.segments_rev
        )
        rev, segments_rev = int(raw_rev or 0), int(raw_segments_rev or 0)
        awaited, self._awaited = self._awaited, None
        if awaited is not None and self._rev >= awaited[0] and self._segments_rev >= awaited[1]:
            self._last_sync = max(self._last_sync or 0.0, awaited[2])  # notices caught up with that poll
        if rev == self._rev and segments_rev == self._segments_rev:
            self._mark_synced()
            return self._poll_interval
        ahead = rev > self._rev and segments_rev >= self._segments_rev
        caught_up = awaited is None or (self._rev >= awaited[0] and self._segments_rev >= awaited[1])
        if ahead and caught_up:
            self._awaited = (rev, segments_rev, polled_at)
            return _NOTICE_GRACE
        _log.info("reader.missed_notice", environment=self.environment, rev=rev, known=self._rev)
        await self._resync()
        return self._poll_interval

    async def _on_notices(self, notices: list[tuple[str, str]]) -> None:
        """Apply a burst of notices at once: the flags and segments they name are re-read in one
        round trip and only those are recompiled. A notice that skips a revision, or a reload
        notice, resyncs instead (once for the whole burst)."""
        flags: dict[str, None] = {}
        segments: dict[str, None] = {}
        rev, segments_rev, resync = self._rev, self._segments_rev, False
        for channel, data in notices:
            try:
                notice: dict[str, Any] = json.loads(data)
            except ValueError:
                _log.warning("reader.bad_notice", environment=self.environment, channel=channel)
                continue
            number = int(notice.get("rev", 0))
            is_segment = channel == self.keys.segments_channel
            key = notice.get("segment_key" if is_segment else "flag_key")
            known = segments_rev if is_segment else rev
            if notice.get("reload") or number > known + 1 or not isinstance(key, str):
                resync = True
            elif number == known + 1 and is_segment:
                segments[key], segments_rev = None, number
            elif number == known + 1:
                flags[key], rev = None, number
        if resync:
            await self._resync()
            return
        await self._refresh(list(flags), list(segments))
        self._rev, self._segments_rev = rev, segments_rev

    async def _refresh(self, flag_keys: list[str], segment_keys: list[str]) -> None:
        if not flag_keys and not segment_keys:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            if segment_keys:
                pipe.hmget(self.keys.segments, segment_keys)
            if flag_keys:
                pipe.hmget(self.keys.env_flags(self.environment), flag_keys)
            replies = list(await pipe.execute())
        if segment_keys:
            raws = dict(self._raw_segments)
            for key, raw in zip(segment_keys, replies.pop(0), strict=True):
                if raw is None:
                    raws.pop(key, None)
                else:
                    raws[key] = str(raw)
            self._apply_segments(raws)
        if flag_keys:
            docs = dict(zip(flag_keys, replies.pop(0), strict=True))
            changed = {key: str(raw) for key, raw in docs.items() if raw is not None}
            self._apply_flag_docs(changed, removed=[key for key, raw in docs.items() if raw is None])

    async def _resync(self) -> None:
        """Read revision + hash atomically (MULTI), then apply what differs from the snapshot."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.env_rev(self.environment))
            pipe.hgetall(self.keys.env_flags(self.environment))
            pipe.get(self.keys.segments_rev)
            pipe.hgetall(self.keys.segments)
            rev, flags, segments_rev, segments = await pipe.execute()
        if dict(segments) != self._raw_segments:
            self._apply_segments(dict(segments))
        changed = {k: str(v) for k, v in flags.items() if self._raw_flags.get(k) != v}
        removed = [k for k in self._raw_flags if k not in flags]
        self._apply_flag_docs(changed, removed=removed)
        self._rev, self._segments_rev = int(rev or 0), int(segments_rev or 0)
        self._awaited = None
        self._mark_synced()

    # --- pure snapshot updates -------------------------------------------------------------

    def _apply_flag_docs(self, changed: Mapping[str, str], removed: list[str]) -> None:
        if not changed and not removed:
            return
        decoded: dict[str, tuple[Flag, int]] = {}
        for key, raw in changed.items():
            try:
                version, flag = decode_env_doc(raw)
            except (ValidationError, ValueError, KeyError) as e:
                _log.error("reader.bad_document", environment=self.environment, flag_key=key, error=str(e))
                continue
            decoded[key] = (flag, version)
            self._raw_flags[key] = raw
        self._sources.update(decoded)
        for key in removed:
            self._raw_flags.pop(key, None)
            self._sources.pop(key, None)
        if len(decoded) + len(removed) > _FULL_RECOMPILE_AFTER:
            self._compiled = compile_environment(self._sources.values(), self.environment, self._segments)
        else:
            compiled = self._compiled
            for key in removed:
                compiled = compiled.without(key)
            for flag, version in decoded.values():
                compiled = compiled.with_flag(flag, version)
            self._compiled = compiled
        self._signal_change()

    def _apply_segments(self, raws: dict[str, str]) -> None:
        segments: dict[str, Segment] = {}
        for key, raw in raws.items():
            try:
                segments[key] = decode_segment_doc(raw)[1]
            except (ValidationError, ValueError, KeyError) as e:
                _log.error("reader.bad_segment", segment_key=key, error=str(e))
        self._raw_segments, self._segments = raws, segments
        self._compiled = self._compiled.with_segments(segments)
        self._signal_change()

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _mark_synced(self) -> None:
        self._last_sync = time.monotonic()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
