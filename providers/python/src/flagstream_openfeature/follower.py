"""One environment's read model, loaded from Redis once and kept fresh on a background thread.

The synchronous twin of ``projections/reader.py`` (which is asyncio and reports to the API's metrics,
so an application cannot import it): subscribe to the change channels first, load the revision and the
hash in one MULTI, compile every flag; then apply change notices (a notice that skips a revision, or a
``reload`` notice, resyncs), compare the revision counters every ``poll_interval`` seconds (a missed
notice resyncs), and keep serving the last snapshot while Redis is away, reconnecting with a bounded
backoff. The snapshot is an immutable :class:`CompiledEnvironment` swapped atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.client import PubSub
from redis.exceptions import RedisError

from core.evaluation import CompiledEnvironment, compile_environment
from core.model import Segment
from projections.documents import decode_env_doc, decode_segment_doc
from projections.keys import DEFAULT_NAMESPACE, Keyspace

__all__ = ["Listener", "SnapshotFollower"]

_log = logging.getLogger("flagstream_openfeature")

Listener = Callable[[str, list[str]], None]
"""Called with ``("ready" | "changed" | "stale" | "error", flag_keys)`` from the follower thread."""


class SnapshotFollower:
    """The compiled flags of one environment, refreshed from change notices and revision polling."""

    def __init__(
        self,
        client: Redis,
        environment: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        poll_interval: float = 1.0,
        max_backoff: float = 2.0,
        listener: Listener | None = None,
    ) -> None:
        self.environment = environment
        self.keys = Keyspace(namespace)
        self._client = client
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._listener = listener or (lambda kind, keys: None)
        self.snapshot: CompiledEnvironment = compile_environment((), environment, {})
        self._raw_flags: dict[str, str] = {}
        self._raw_segments: dict[str, str] = {}
        self._segments: dict[str, Segment] = {}
        self._rev = 0
        self._segments_rev = 0
        self._pubsub: PubSub | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self._announce = False

    @property
    def revision(self) -> int:
        return self._rev

    def start(self) -> None:
        """Load the snapshot once (raises :class:`RedisError`/:class:`OSError` if Redis is unreachable)."""
        self._connect()
        self._announce = True
        self._thread = threading.Thread(
            target=self._follow, name=f"flagstream:{self.environment}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._drop_pubsub()

    # --- following Redis -------------------------------------------------------------------

    def _connect(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.keys.env_channel(self.environment), self.keys.segments_channel)
            self._resync()
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub
        self.connected = True

    def _follow(self) -> None:
        backoff = 0.05
        next_poll = time.monotonic() + self._poll_interval
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._connect()
                    self._listener("ready", [])
                    next_poll = time.monotonic() + self._poll_interval
                next_poll = self._follow_once(next_poll)
                backoff = 0.05
            except (RedisError, OSError) as e:
                if self.connected:
                    _log.warning("flagstream.redis_unavailable environment=%s error=%s", self.environment, e)
                    self._listener("stale", [])
                self.connected = False
                self._drop_pubsub()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception:  # the follower must never die: report, serve the last snapshot, retry
                _log.exception("flagstream.follower_error environment=%s", self.environment)
                self._listener("error", [])
                self.connected = False
                self._drop_pubsub()
                self._stop.wait(self._max_backoff)

    def _follow_once(self, next_poll: float) -> float:
        assert self._pubsub is not None
        message = self._pubsub.get_message(timeout=max(min(next_poll - time.monotonic(), 0.2), 0.0))
        notices: list[tuple[str, str]] = []
        while message is not None:
            if message.get("type") == "message":
                notices.append((_text(message["channel"]), _text(message["data"])))
            message = self._pubsub.get_message(timeout=0.0)
        if notices:
            self._on_notices(notices)
        if time.monotonic() >= next_poll:
            self._poll()
            return time.monotonic() + self._poll_interval
        return next_poll

    def _poll(self) -> None:
        raw_rev, raw_segments_rev = self._client.mget(
            self.keys.env_rev(self.environment), self.keys.segments_rev
        )
        if int(raw_rev or 0) != self._rev or int(raw_segments_rev or 0) != self._segments_rev:
            _log.info("flagstream.missed_notice environment=%s rev=%s", self.environment, raw_rev)
            self._resync()

    def _on_notices(self, notices: list[tuple[str, str]]) -> None:
        flags: list[str] = []
        rev, resync = self._rev, False
        for channel, data in notices:
            try:
                notice: dict[str, Any] = json.loads(data)
            except ValueError:
                continue
            number, key = int(notice.get("rev", 0)), notice.get("flag_key")
            if channel == self.keys.segments_channel:
                resync = resync or number > self._segments_rev  # segments are inlined: recompile all
            elif notice.get("reload") or not isinstance(key, str) or number > rev + 1:
                resync = True
            elif number == rev + 1:
                flags.append(key)
                rev = number
        if resync:
            self._resync()
        elif flags:
            docs = self._client.hmget(self.keys.env_flags(self.environment), flags)
            changed = {k: _text(raw) for k, raw in zip(flags, docs, strict=True) if raw is not None}
            removed = [k for k, raw in zip(flags, docs, strict=True) if raw is None]
            self._apply(changed, removed, self._raw_segments)
            self._rev = rev

    def _resync(self) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.env_rev(self.environment))
            pipe.hgetall(self.keys.env_flags(self.environment))
            pipe.get(self.keys.segments_rev)
            pipe.hgetall(self.keys.segments)
            rev, flags, segments_rev, segments = pipe.execute()
        raw_flags = {_text(k): _text(v) for k, v in flags.items()}
        changed = {k: v for k, v in raw_flags.items() if self._raw_flags.get(k) != v}
        removed = [k for k in self._raw_flags if k not in raw_flags]
        self._apply(changed, removed, {_text(k): _text(v) for k, v in segments.items()})
        self._rev, self._segments_rev = int(rev or 0), int(segments_rev or 0)

    # --- pure snapshot updates -------------------------------------------------------------

    def _apply(self, changed: Mapping[str, str], removed: list[str], raw_segments: dict[str, str]) -> None:
        segments_changed = raw_segments != self._raw_segments
        if not changed and not removed and not segments_changed:
            return
        snapshot = self.snapshot
        for key, raw in changed.items():
            try:
                version, flag = decode_env_doc(raw)
            except (ValidationError, ValueError, KeyError) as e:
                _log.error("flagstream.bad_document flag_key=%s error=%s", key, e)
                continue
            self._raw_flags[key] = raw
            snapshot = snapshot.with_flag(flag, version)
        for key in removed:
            self._raw_flags.pop(key, None)
            snapshot = snapshot.without(key)
        if segments_changed:
            self._raw_segments, self._segments = raw_segments, _decode_segments(raw_segments)
            snapshot = snapshot.with_segments(self._segments)
        self.snapshot = snapshot  # one reference swap: evaluations see the old or the new snapshot
        if self._announce:  # the first load is announced by PROVIDER_READY, not as a change
            keys = sorted(self._raw_flags) if segments_changed else sorted({*changed, *removed})
            self._listener("changed", keys)

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                pubsub.close()


def _decode_segments(raws: Mapping[str, str]) -> dict[str, Segment]:
    segments: dict[str, Segment] = {}
    for key, raw in raws.items():
        try:
            segments[key] = decode_segment_doc(raw)[1]
        except (ValidationError, ValueError, KeyError) as e:
            _log.error("flagstream.bad_segment segment_key=%s error=%s", key, e)
    return segments


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
