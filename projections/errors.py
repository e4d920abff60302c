"""Errors of the read side, translated from driver errors at the adapters."""

from __future__ import annotations

from typing import ClassVar

from core.errors import FlagstreamError

__all__ = ["ApplyRejected", "PoisonEvent", "ReadModelUnavailable", "SwitchRefused"]


class ReadModelUnavailable(FlagstreamError):
    """Redis could not be reached or answered with a connection-level error: try again later."""

    code: ClassVar[str] = "read_model_unavailable"
    http_status: ClassVar[int] = 503
    retriable: ClassVar[bool] = True


class ApplyRejected(FlagstreamError):
    """An event the projection cannot fold into its stream's state (the core refused it)."""

    code: ClassVar[str] = "apply_rejected"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False


class PoisonEvent(FlagstreamError):
    """A Kafka record the projector can never project: unparseable, unappliable, or after a gap.

    Raised from one place (:meth:`projections.one_at_a_time.OneAtATime._reject`) so the dead-letter
    queue can hook in there. ``kind`` is ``"unparseable"``, ``"rejected"`` or ``"gap"``.
    """

    code: ClassVar[str] = "poison_event"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        topic: str,
        partition: int,
        offset: int,
        stream_key: str | None,
        version: int | None,
        raw: bytes | None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.stream_key = stream_key
        self.version = version
        self.raw = raw


class SwitchRefused(FlagstreamError):
    """A shadow rebuild was not switched in (it is behind the live projection)."""

    code: ClassVar[str] = "switch_refused"
    http_status: ClassVar[int] = 409
    retriable: ClassVar[bool] = True
