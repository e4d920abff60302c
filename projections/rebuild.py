"""Rebuild the read model from offset 0 into a shadow namespace; diff it with the live one, or switch.

- The shadow (``fs-shadow`` by default) is wiped, then the whole topic is read with a plain
  consumer (no group, every partition assigned, from the beginning), batch by batch, folded as
  parsed JSON by :class:`projections.batch.ShadowFolder` (``core.fastfold``; the same read model
  as the projector's apply, checkpoints included, under the projector's group name so they line
  up with the live ones) and written in bulk flushes. Memory: the folded states of the streams
  seen (bounded, see ``projections.batch``), never the log.
- *Caught up* means: a poll returned nothing for ``idle`` seconds **and** every shadow
  checkpoint is at or beyond the live projector's. (tansu's high watermark cannot be trusted,
  see DESIGN.md, so the end of the log is never decided from ``end_offsets``.)
- ``check`` diffs shadow and live (states, environment documents, segments) and returns the
  drifted keys; it retries a few times, since the live projector may be moving meanwhile.
- ``switch`` runs ``lua/swap.lua``: one atomic script that refuses unless the shadow is at or
  beyond the live checkpoints, RENAMEs every shadow key onto its live name, deletes live keys
  the shadow does not have, bumps each revision counter and publishes ``{"reload": true}``.
  Readers keep serving their snapshot and resync on that notice: no gap in evaluation.
  With ``environment``, only that environment's document hash is switched.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiokafka import TopicPartition
from redis.asyncio import Redis

from events.kafka.adapter import make_consumer
from projections.batch import ShadowFolder, paused_gc
from projections.connection import require_text_client
from projections.errors import PoisonEvent, SwitchRefused
from projections.keys import Keyspace
from projections.projector import DEFAULT_GROUP
from projections.readmodel import load_script

__all__ = ["DEFAULT_SHADOW", "RebuildReport", "ShadowRebuild"]

DEFAULT_SHADOW = "fs-shadow"
_log = structlog.get_logger("projections.rebuild")
_CHUNK = 500


@dataclass(slots=True)
class RebuildReport:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    seconds: float = 0.0
    switched: bool = False
    drift: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class ShadowRebuild:
    """One rebuild session: ``async with ShadowRebuild(...) as rebuild: await rebuild.run(switch=True)``."""

    def __init__(
        self,
        client: Redis,
        *,
        bootstrap_servers: str,
        topic: str,
        group: str = DEFAULT_GROUP,
        live: Keyspace | None = None,
        shadow: Keyspace | None = None,
        batch: int = 2000,
        idle: float = 1.0,
    ) -> None:
        self._client = require_text_client(client)
        self.live = live or Keyspace()
        self.shadow = shadow or Keyspace(DEFAULT_SHADOW)
        if self.live.namespace == self.shadow.namespace:
            raise ValueError("the shadow namespace must differ from the live one")
        self.topic, self.group = topic, group
        self._swap = client.register_script(load_script("swap.lua"))
        self._consumer = make_consumer(bootstrap_servers, group_id=None, client_id="flagstream-rebuild",
                                       fetch_max_bytes=16 * 1024 * 1024,
                                       max_partition_fetch_bytes=2 * 1024 * 1024)
        self._batch, self._idle = batch, idle
        self._folder = ShadowFolder(self._client, self.shadow, group)
        self.report = RebuildReport()

    async def __aenter__(self) -> ShadowRebuild:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        await self.wipe_shadow()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def run(self, *, switch: bool, environment: str | None = None, attempts: int = 5) -> RebuildReport:
        """Rebuild, then switch (``switch``) or diff with the live model (``not switch``)."""
        started = time.monotonic()
        for _ in range(attempts):
            await self.catch_up()
            if switch:
                try:
                    await self.switch(environment)
                except SwitchRefused:
                    continue
                self.report.switched = True
                await self.wipe_shadow()
                break
            self.report.drift = await self.diff(environment)
            if not self.report.drift:
                break
        self.report.seconds = time.monotonic() - started
        _log.info(
            "rebuild.done",
            events=self.report.events,
            seconds=round(self.report.seconds, 3),
            switched=self.report.switched,
            drift=len(self.report.drift),
        )
        return self.report

    async def wipe_shadow(self) -> None:
        self._folder = ShadowFolder(self._client, self.shadow, self.group)  # its states are gone too
        batch: list[str] = []
        async for key in self._client.scan_iter(self.shadow.all_keys_pattern(), count=_CHUNK):
            batch.append(str(key))
            if len(batch) >= _CHUNK:
                await self._client.unlink(*batch)
                batch.clear()
        if batch:
            await self._client.unlink(*batch)

    async def catch_up(self) -> None:
        """Consume until idle and at or beyond the live projector's checkpoints."""
        try:
            await self._consume_until_caught_up()
        finally:
            gc.unfreeze()  # see projections.batch.paused_gc

    async def _consume_until_caught_up(self) -> None:
        while True:
            polled = time.monotonic()
            batches = await self._consumer.getmany(timeout_ms=int(self._idle * 1000), max_records=self._batch)
            for tp, records in batches.items():
                await self._apply(tp, records)
            if batches or time.monotonic() - polled < self._idle * 0.9:
                continue  # records, or an empty answer before the idle period: not idle yet
            if await self._at_or_beyond_live():
                await self._folder.flush()
                return

    async def _apply(self, tp: TopicPartition, records: list[Any]) -> None:
        with paused_gc():
            batch = self._parse(tp, records)
            outcome = await self._folder.fold(tp.topic, tp.partition, batch)
        self.report.applied += outcome.applied
        self.report.duplicates += outcome.duplicates
        self.report.skipped += outcome.skipped
        self.report.events += outcome.applied + outcome.duplicates + outcome.skipped
        if outcome.gap is not None:
            await self._folder.flush()  # everything before the gap is kept, checkpoint included
            gap = outcome.gap
            raw = next(r.value for r in records if r.offset == gap.offset)
            raise _poison("gap", tp, gap.offset, gap.fields, raw)

    @staticmethod
    def _parse(tp: TopicPartition, records: list[Any]) -> list[tuple[int, dict[str, Any]]]:
        batch: list[tuple[int, dict[str, Any]]] = []
        for record in records:
            try:
                fields = orjson.loads(record.value)
            except orjson.JSONDecodeError as e:
                raise _poison("unparseable", tp, record.offset, None, record.value) from e
            # the rest of the envelope is checked by the fold (a missing field: ApplyRejected)
            if type(fields) is not dict or "flag_key" not in fields or "version" not in fields:
                raise _poison("unparseable", tp, record.offset, None, record.value)
            batch.append((record.offset, fields))
        return batch

    async def _at_or_beyond_live(self) -> bool:
        for live_key, shadow_key in await self._checkpoint_pairs():
            live, stored = await self._client.mget(live_key, shadow_key)
            shadow = self._folder.position(shadow_key)  # folded, maybe not written yet
            if int(stored or 0 if shadow is None else shadow) < int(live or 0):
                return False
        return True

    async def _checkpoint_pairs(self) -> list[tuple[str, str]]:
        live = [k async for k in self._scan(self.live.checkpoint_pattern(self.group, self.topic))]
        return [(k, self.live.relocate(k, self.shadow)) for k in sorted(live)]

    async def switch(self, environment: str | None = None) -> None:
        """Move the shadow onto the live keys in one atomic script (see the module docstring)."""
        pairs, stale, revs = await self._switch_plan(environment)
        ckpts = await self._checkpoint_pairs()
        keys = [k for pair in ckpts for k in pair] + [k for pair in pairs for k in pair] + stale
        keys += [rev for rev, _ in revs]
        args: list[str | int] = [len(ckpts), len(pairs), len(stale), len(revs), *[ch for _, ch in revs]]
        outcome, _ = await self._swap(keys=keys, args=args)
        if outcome != "switched":
            raise SwitchRefused("the shadow read model is behind the live one")
        _log.info("rebuild.switched", keys=len(pairs), removed=len(stale), environment=environment)

    async def _switch_plan(
        self, environment: str | None
    ) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
        live_envs = {str(e) for e in await self._client.smembers(self.live.environments)}
        shadow_envs = {str(e) for e in await self._client.smembers(self.shadow.environments)}
        envs = sorted({environment} if environment else live_envs | shadow_envs)
        data_keys = [self.shadow.env_flags(e) for e in envs]
        revs = [(self.live.env_rev(e), self.live.env_channel(e)) for e in envs]
        if environment is None:
            data_keys += [self.shadow.segments, self.shadow.environments]
            data_keys += [k async for k in self._scan(self.shadow.state_pattern())]
            data_keys += [k async for k in self._scan(self.shadow.head_pattern())]
            data_keys += [k for _, k in await self._checkpoint_pairs()]
            data_keys += [k async for k in self._scan(self.shadow.checkpoint_pattern(self.group, self.topic))]
            revs.append((self.live.segments_rev, self.live.segments_channel))
        present = [k for k in dict.fromkeys(data_keys) if await self._client.exists(k)]
        pairs = [(k, self.shadow.relocate(k, self.live)) for k in present]
        targets = {live for _, live in pairs}
        candidates = [self.live.env_flags(e) for e in envs]
        if environment is None:
            candidates += [self.live.segments, self.live.environments]
            candidates += [k async for k in self._scan(self.live.state_pattern())]
            candidates += [k async for k in self._scan(self.live.head_pattern())]
        stale = [k for k in candidates if k not in targets and await self._client.exists(k)]
        return pairs, stale, revs

    async def diff(self, environment: str | None = None) -> list[str]:
        """Keys (``state:<stream>``, ``env:<env>:flags/<flag>``, ``segments/<key>``) that differ."""
        drift: list[str] = []
        live_envs = {str(e) for e in await self._client.smembers(self.live.environments)}
        shadow_envs = {str(e) for e in await self._client.smembers(self.shadow.environments)}
        for env in sorted({environment} if environment else live_envs | shadow_envs):
            label = f"env:{env}:flags"
            drift += await self._diff_hash(self.live.env_flags(env), self.shadow.env_flags(env), label)
        if environment is None:
            drift += await self._diff_hash(self.live.segments, self.shadow.segments, "segments")
            drift += await self._diff_states()
        return drift

    async def _diff_hash(self, live_key: str, shadow_key: str, label: str) -> list[str]:
        live = await self._client.hgetall(live_key)
        shadow = await self._client.hgetall(shadow_key)
        fields = sorted(str(f) for f in set(live) | set(shadow))
        return [f"{label}/{f}" for f in fields if live.get(f) != shadow.get(f)]

    async def _diff_states(self) -> list[str]:
        streams = {self.live.stream_of_state_key(k) async for k in self._scan(self.live.state_pattern())}
        streams |= {self.shadow.stream_of_state_key(k) async for k in self._scan(self.shadow.state_pattern())}
        ordered = sorted(streams)
        drift: list[str] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            live = await self._client.mget([self.live.state(s) for s in chunk])
            shadow = await self._client.mget([self.shadow.state(s) for s in chunk])
            drift += [f"state:{s}" for s, a, b in zip(chunk, live, shadow, strict=True) if a != b]
        return drift

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        async for key in self._client.scan_iter(pattern, count=_CHUNK):
            yield str(key)


def _poison(kind: str, tp: TopicPartition, offset: int, fields: Mapping[str, Any] | None,
            raw: bytes) -> PoisonEvent:
    return PoisonEvent(
        f"{kind} record at {tp.topic}[{tp.partition}]@{offset} during rebuild",
        kind=kind,
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        stream_key=fields["flag_key"] if fields else None,
        version=fields["version"] if fields else None,
        raw=raw,
    )
