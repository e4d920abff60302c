"""Applying plain records many at a time: the projector's fast path.

Plain records (events of projected, unblocked streams) go to Redis in one pipeline
(:meth:`RedisReadModel.apply_many`): first the plain run every partition's batch starts with, all
partitions in ONE round trip (:meth:`BatchedRuns._apply_leading_runs`); then, per partition, the
records left go one at a time (:class:`projections.one_at_a_time.OneAtATime`) until the next plain
run, which is batched again (:meth:`BatchedRuns._apply_partition`). A record whose outcome was not
the planned one ends its partition's run: from there it goes one at a time. Every apply carries a
checkpoint *floor* (what the projector believes Redis holds), chained record to record.
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from core.envelope import Event
from events.errors import StoreUnavailable
from projections.deadletters import is_projected_stream
from projections.one_at_a_time import OneAtATime
from projections.readmodel import Checkpoint

__all__ = ["BatchedRuns"]


class BatchedRuns(OneAtATime):
    """The batched apply loops (see the module docstring)."""

    async def _apply_leading_runs(
        self,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
        parsed: dict[TopicPartition, list[Event | Exception]],
        done: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """The plain records every partition's batch starts with, all partitions in ONE round trip
        (:meth:`RedisReadModel.apply_many`); each partition's floors chain from its own floor."""
        runs: list[tuple[TopicPartition, ConsumerRecord[Any, Any], Event]] = []
        items: list[tuple[Event, Checkpoint]] = []
        for tp, records in batches.items():
            floor = self._floors.get(tp)
            for record, event in zip(
                records, parsed[tp][: await self._plain_run(parsed[tp], 0)], strict=False
            ):
                assert isinstance(event, Event)
                runs.append((tp, record, event))
                items.append((event, self._checkpoint(tp, record.offset, floor)))
                floor = record.offset + 1
        if not items:
            return
        results = await self.read_model.apply_many(items)
        stopped: set[TopicPartition] = set()
        for (tp, record, event), result in zip(runs, results, strict=True):
            if result is None or tp in stopped:  # the rest of this partition: one at a time
                stopped.add(tp)
                continue
            self._observe(event, result.outcome.value, result.environments, tp, record.offset + 1)
            self._floors[tp] = record.offset + 1
            done[tp].append(record)

    async def _apply_partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        parsed: list[Event | Exception],
        done: list[ConsumerRecord[Any, Any]],
    ) -> None:
        """The records of ``tp`` from ``len(done)`` on: one at a time through :meth:`_apply_one`
        (a record that did not go as planned, or is not plain), then the next plain run batched."""
        i = len(done)
        while i < len(records):
            if not await self._apply_one(tp, records[i], parsed[i]):
                return
            done.append(records[i])
            i += 1
            run = await self._plain_run(parsed, i)
            if run > 1:
                i += await self._apply_run(tp, records[i : i + run], parsed[i : i + run], done)

    async def _plain_run(self, parsed: list[Event | Exception], start: int) -> int:
        """How many records from ``start`` are events of projected, unblocked streams."""
        end = start
        while end < len(parsed):
            event = parsed[end]
            if not isinstance(event, Event) or not is_projected_stream(event.flag_key):
                break
            if self._dead_letters is not None and not await self._is_unblocked(event.flag_key):
                break
            end += 1
        return end - start

    async def _is_unblocked(self, flag_key: str) -> bool:
        """The dead-letter gate lets ``flag_key`` through (not known: the record goes one at a time,
        where :meth:`ProjectorDeadLetters.screen` decides and reports a store outage)."""
        assert self._dead_letters is not None
        try:
            return not await self._dead_letters.gate.is_blocked(flag_key)
        except StoreUnavailable:
            return False

    async def _apply_run(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[Any, Any]],
        events: list[Event | Exception],
        done: list[ConsumerRecord[Any, Any]],
    ) -> int:
        """Apply plain records in one round trip; returns how many went as planned (appended to
        ``done``). Each floor is the checkpoint its predecessor writes (see ``apply_many``)."""
        floor, before = self._floors.get(tp), len(done)
        items: list[tuple[Event, Checkpoint]] = []
        for record, event in zip(records, events, strict=True):
            assert isinstance(event, Event)
            items.append((event, self._checkpoint(tp, record.offset, floor)))
            floor = record.offset + 1
        results = await self.read_model.apply_many(items)
        for record, (event, _), result in zip(records, items, results, strict=True):
            if result is None:
                return len(done) - before
            self._observe(event, result.outcome.value, result.environments, tp, record.offset + 1)
            self._floors[tp] = record.offset + 1
            done.append(record)
        return len(done) - before
