"""The rollback worker's logic: a firing metric alert -> compensating commands, skips and incidents.

For each ``MetricAlertFired`` event (read from ``flagstream.metric-alerts``):

1. decide which flags it implicates (:func:`core.alerts.implicated_flags`) from their streams;
2. per implicated flag, wait until ``alert accepted + confirmation delay`` (the flag's
   ``auto_rollback.confirmation_delay_seconds`` when it differs from the model default, else the
   worker's default); a ``MetricAlertResolved`` of that alert appended meanwhile cancels;
3. decide again on the flag's fresh stream (a person may have acted meanwhile) and issue, through
   :meth:`events.commands.service.CommandService.execute`, ``RollBackEnvironment`` (or, in dry-run,
   ``RecordRollbackSkipped`` saying what it would have done) with ``expected_version`` = the
   version decided against, ``causation_id`` = the alert event id, and an idempotency key derived
   from (alert fingerprint, alert event, flag, environment, version);
4. record an ``IncidentRecorded`` event in stream ``incident:<id>`` (the id is derived from the
   alert event and the flag, so it is written once).

A redelivered alert, a second worker or a restart changes nothing twice: the decision sees the
event caused by this alert ("already handled"), the idempotency key replays, the expected version
conflicts. Every effect is idempotent, so offsets are committed after the work (at least once).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import structlog

from core.alerts import (
    DEFAULT_CONFIRMATION_SECONDS,
    Decision,
    Implicated,
    IncidentFlag,
    MetricAlertFiredPayload,
    MetricAlertResolvedPayload,
    NotImplicated,
    alert_info,
    decide_flag,
    implicated_flags,
)
from core.commands import Command, RecordRollbackSkipped, RollBackEnvironment
from core.envelope import Event
from core.errors import VersionConflict
from core.events import EventType, read_payload
from core.model import AutoRollback
from events.commands.service import CommandMeta, CommandOutcome
from events.rollback.alerts import AlertStore
from events.rollback.incidents import IncidentRecorder, alert_name
from monitoring import metrics
from runtime.settings import Settings

__all__ = ["ChangedFlags", "Commands", "FlagResult", "RollbackPolicy", "RollbackWorker"]

log = structlog.get_logger(__name__)

_DECIDE_ATTEMPTS = 4


class Commands(Protocol):
    async def execute(self, command: Command, meta: CommandMeta) -> CommandOutcome: ...


class ChangedFlags(Protocol):
    async def flags_changed_since(self, since: datetime) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    lookback: timedelta = timedelta(minutes=30)
    default_confirmation_seconds: float = DEFAULT_CONFIRMATION_SECONDS
    dry_run: bool = False
    actor: str = "rollback-worker"

    @classmethod
    def from_settings(cls, settings: Settings) -> RollbackPolicy:
        return cls(
            lookback=timedelta(seconds=settings.rollback_lookback_seconds),
            default_confirmation_seconds=settings.rollback_default_confirmation_seconds,
            dry_run=settings.rollback_dry_run,
        )

    def confirmation_seconds(self, flag: AutoRollback) -> float:
        """The flag's own delay when it set one (differs from the model default), else the worker's."""
        own = flag.confirmation_delay_seconds
        return own if own != DEFAULT_CONFIRMATION_SECONDS else self.default_confirmation_seconds


@dataclass(frozen=True, slots=True)
class FlagResult:
    """What the worker did about one flag for one alert."""

    flag_key: str | None
    environment: str | None
    # rolled_back | dry_run | skipped | cancelled | cooldown | not_implicated | opted_out | already_handled
    outcome: str
    why: str = ""
    event_id: str | None = None


class RollbackWorker:
    def __init__(
        self,
        store: AlertStore,
        commands: Commands,
        changed: ChangedFlags,
        policy: RollbackPolicy,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self._store = store
        self._commands = commands
        self._changed = changed
        self._policy = policy
        self._clock = clock
        self._new_id = new_id
        self._incidents = IncidentRecorder(store, actor=policy.actor, clock=clock, new_id=new_id)

    async def handle(self, event: Event) -> list[FlagResult]:
        """Everything this worker does about one alert event (idempotent; safe to call again)."""
        payload = read_payload(event)
        if isinstance(payload, MetricAlertResolvedPayload):
            log.info("rollback.alert_resolved", fingerprint=payload.fingerprint, version=event.version)
            return []
        if not isinstance(payload, MetricAlertFiredPayload):
            return []
        age = (self._clock() - event.occurred_at).total_seconds()
        if age > self._policy.lookback.total_seconds() or await self._resolved_after(event):
            log.info("rollback.alert_over", fingerprint=payload.fingerprint, age_seconds=round(age, 1))
            why = (
                "the alert resolved" if age <= self._policy.lookback.total_seconds() else "the alert is stale"
            )
            return [
                FlagResult(payload.labels.get("flag"), payload.labels.get("environment"), "cancelled", why)
            ]
        histories = await self._histories(payload)
        decisions = implicated_flags(
            payload, str(event.event_id), histories, now=self._clock(), lookback=self._policy.lookback
        )
        if not decisions:
            log.info("rollback.no_candidate", fingerprint=payload.fingerprint)
            metrics.observe_rollback("not_implicated")
            return [
                FlagResult(
                    None,
                    payload.labels.get("environment"),
                    "not_implicated",
                    "no flag changed in the environment within the look-back window",
                )
            ]
        return list(await asyncio.gather(*(self._follow(event, payload, d) for d in decisions)))

    async def _histories(self, alert: MetricAlertFiredPayload) -> dict[str, list[Event]]:
        named = alert.labels.get("flag")
        if named is not None:
            keys = [named] if ":" not in named else []
        else:
            keys = await self._changed.flags_changed_since(alert.starts_at - self._policy.lookback)
        return {key: await self._store.read_stream(key) for key in keys}

    async def _follow(self, event: Event, alert: MetricAlertFiredPayload, first: Decision) -> FlagResult:
        if isinstance(first, NotImplicated) and first.outcome != "changed_after_alert":
            return await self._conclude(event, alert, first)
        if isinstance(first, Implicated):
            delay = self._policy.confirmation_seconds(first.auto_rollback)
            wait = (event.occurred_at + timedelta(seconds=delay) - self._clock()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)  # the confirmation delay itself, not a synchronisation
            if await self._resolved_after(event):
                metrics.observe_rollback("skipped")
                log.info("rollback.cancelled", flag=first.flag_key, fingerprint=alert.fingerprint)
                return FlagResult(
                    first.flag_key,
                    first.environment,
                    "cancelled",
                    "the alert resolved within the confirmation delay",
                )
        return await self._act(event, alert, first)

    async def _act(self, event: Event, alert: MetricAlertFiredPayload, first: Decision) -> FlagResult:
        """Decide again on the flag's fresh stream and act; a lost race (version conflict) decides again."""
        assert first.flag_key is not None and first.environment is not None
        for _ in range(_DECIDE_ATTEMPTS):
            events = await self._store.read_stream(first.flag_key)
            decision = decide_flag(
                alert,
                str(event.event_id),
                events,
                environment=first.environment,
                explicit="flag" in alert.labels,
                now=self._clock(),
                lookback=self._policy.lookback,
            )
            try:
                if isinstance(decision, Implicated):
                    return await self._roll_back(event, alert, decision)
                return await self._conclude(event, alert, decision)
            except VersionConflict:
                log.info("rollback.conflict_redeciding", flag=first.flag_key)
        metrics.observe_rollback("failed")
        return FlagResult(first.flag_key, first.environment, "failed", "the flag kept changing")

    async def _resolved_after(self, event: Event) -> bool:
        stream = await self._store.read_stream(event.flag_key)
        return any(
            e.version > event.version and e.type == EventType.METRIC_ALERT_RESOLVED.value for e in stream
        )

    async def _conclude(
        self, event: Event, alert: MetricAlertFiredPayload, decision: NotImplicated
    ) -> FlagResult:
        result = FlagResult(decision.flag_key, decision.environment, decision.outcome, decision.why)
        log.info(
            "rollback.not_rolled_back",
            flag=decision.flag_key,
            environment=decision.environment,
            outcome=decision.outcome,
            why=decision.why,
            fingerprint=alert.fingerprint,
        )
        match decision.outcome:
            case "already_handled":
                if decision.flag_key is not None:
                    events = await self._store.read_stream(decision.flag_key)
                    await self._incidents.repair(event, alert, events)
            case "changed_after_alert":
                assert decision.flag_key is not None and decision.environment is not None
                skip = RecordRollbackSkipped(
                    flag_key=decision.flag_key,
                    environment=decision.environment,
                    why=decision.why,
                    alert=alert_info(alert),
                    expected_version=decision.decided_version,
                    reason=f"automatic rollback skipped: {alert_name(alert)}",
                )
                outcome = await self._commands.execute(skip, self._meta(event, alert, decision, "skip"))
                metrics.observe_rollback("skipped")
                return FlagResult(*_where(decision), "skipped", decision.why, _first_id(outcome))
            case "cooldown":
                metrics.observe_rollback("cooldown")
            case _:
                metrics.observe_rollback("not_implicated")
        return result

    async def _roll_back(
        self, event: Event, alert: MetricAlertFiredPayload, decision: Implicated
    ) -> FlagResult:
        dry_run = self._policy.dry_run or decision.auto_rollback.dry_run
        where = (decision.flag_key, decision.environment)
        if dry_run:
            why = (
                f"dry_run: would restore {decision.environment!r} to version {decision.to_version}"
                f" (undoing versions {list(decision.undone_versions)})"
            )
            command: Command = RecordRollbackSkipped(
                flag_key=decision.flag_key,
                environment=decision.environment,
                why=why,
                alert=alert_info(alert),
                expected_version=decision.decided_version,
                reason=f"automatic rollback (dry run): {alert_name(alert)}",
            )
        else:
            why = f"restored version {decision.to_version}"
            command = RollBackEnvironment(
                flag_key=decision.flag_key,
                environment=decision.environment,
                to_version=decision.to_version,
                restored_config=decision.restored_config,
                undone_versions=decision.undone_versions,
                alert=alert_info(alert),
                expected_version=decision.decided_version,
                reason=f"automatic rollback: {alert_name(alert)}",
            )
        outcome = await self._commands.execute(command, self._meta(event, alert, decision, "rollback"))
        label: Literal["dry_run", "rolled_back"] = "dry_run" if dry_run else "rolled_back"
        if outcome.events:
            appended = outcome.events[-1]
            seconds = max((appended.occurred_at - event.occurred_at).total_seconds(), 0.0)
            metrics.observe_rollback(label, None if dry_run else seconds)
            await self._incidents.record(
                event,
                alert,
                IncidentFlag(
                    flag_key=decision.flag_key,
                    environment=decision.environment,
                    outcome=label,
                    decided_version=decision.decided_version,
                    to_version=decision.to_version,
                    undone_versions=decision.undone_versions,
                    event_id=str(appended.event_id),
                    version=appended.version,
                ),
                appended.occurred_at,
                dry_run=dry_run,
            )
            log.info(
                "rollback.done",
                flag=decision.flag_key,
                environment=decision.environment,
                outcome=label,
                to_version=decision.to_version,
                version=appended.version,
                seconds=round(seconds, 4),
                fingerprint=alert.fingerprint,
            )
        return FlagResult(*where, label if outcome.events else "already_handled", why, _first_id(outcome))

    def _meta(
        self, event: Event, alert: MetricAlertFiredPayload, decision: Decision, kind: str
    ) -> CommandMeta:
        raw = "\n".join(
            (
                kind,
                alert.fingerprint,
                str(event.event_id),
                str(decision.flag_key),
                str(decision.environment),
                str(decision.decided_version),
            )
        )
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        return CommandMeta(
            actor=self._policy.actor,
            correlation_id=event.correlation_id or str(event.event_id),
            causation_id=str(event.event_id),
            idempotency_key=f"{kind}:{digest[:40]}",
            request_hash=digest,
        )


def _where(decision: Decision) -> tuple[str | None, str | None]:
    return decision.flag_key, decision.environment


def _first_id(outcome: CommandOutcome) -> str | None:
    return str(outcome.events[-1].event_id) if outcome.events else None
