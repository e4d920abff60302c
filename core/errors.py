"""One error tree for Flagstream.

Every error the system raises on purpose is a :class:`FlagstreamError`. A class carries its
*policy* as class variables, so the boundary code never has to guess:

- ``code``: a stable snake_case identifier (part of the public API, shown in error bodies);
- ``http_status``: what the HTTP edge answers;
- ``retriable``: whether trying the same thing again later may succeed.

An instance carries a human ``message`` and ``details``: a list of ``{"path", "message"}``
dicts (``path`` is a field path such as ``rules[0].serve.rollout[1].variation``).

Layers:

- :class:`DomainError` — a command refused by the domain (``core.decide``); nothing written.
- :class:`UnreadableEvent` — an event the core cannot read (unknown type, newer schema,
  malformed payload); never retriable: a reader must park it, not spin on it.
- Other packages subclass :class:`FlagstreamError` directly for infrastructure errors
  (``events`` for store/Kafka failures, which are typically ``retriable = True`` with
  ``http_status = 503``); they translate driver exceptions with ``raise ... from e``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = [
    "DomainError",
    "EnvironmentNotFound",
    "EventOutOfOrder",
    "FlagArchived",
    "FlagExists",
    "FlagNotFound",
    "FlagstreamError",
    "InvalidCommand",
    "InvalidConfiguration",
    "MalformedEvent",
    "SegmentArchived",
    "SegmentExists",
    "SegmentInUse",
    "SegmentNotFound",
    "UnknownEventType",
    "UnreadableEvent",
    "UnsupportedSchemaVersion",
    "VersionConflict",
]

Detail = dict[str, str]


class FlagstreamError(Exception):
    """Base of every deliberate Flagstream error. Subclasses override the class variables."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: Iterable[Mapping[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[Detail] = [
            {"path": str(d.get("path", "")), "message": str(d.get("message", ""))} for d in details
        ]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON error body: ``{"code", "message", "details", "retriable"}``."""
        return {
            "code": self.code,
            "message": self.message,
            "details": [dict(d) for d in self.details],
            "retriable": self.retriable,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# --- domain errors: a command is refused, nothing is written ---------------------------------


class DomainError(FlagstreamError):
    code = "domain_error"
    http_status = 400


class FlagNotFound(DomainError):
    code = "flag_not_found"
    http_status = 404


class FlagExists(DomainError):
    code = "flag_exists"
    http_status = 409


class FlagArchived(DomainError):
    code = "flag_archived"
    http_status = 409


class VersionConflict(DomainError):
    """The command's ``expected_version`` is not the stream's current version."""

    code = "version_conflict"
    http_status = 409

    def __init__(self, *, expected_version: int, current_version: int, stream: str = "") -> None:
        super().__init__(
            f"expected version {expected_version} but {stream or 'the stream'} "
            f"is at version {current_version}",
            details=[{"path": "expected_version", "message": f"current version is {current_version}"}],
        )
        self.expected_version = expected_version
        self.current_version = current_version

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "current_version": self.current_version}


class InvalidConfiguration(DomainError):
    """The resulting flag/segment/configuration is not valid; ``details`` name every field path."""

    code = "invalid_configuration"
    http_status = 422


class InvalidCommand(DomainError):
    """The command itself makes no sense (wrong key, unknown rule id, impossible version...)."""

    code = "invalid_command"
    http_status = 422


class EnvironmentNotFound(DomainError):
    code = "environment_not_found"
    http_status = 404


class SegmentNotFound(DomainError):
    code = "segment_not_found"
    http_status = 404


class SegmentExists(DomainError):
    code = "segment_exists"
    http_status = 409


class SegmentArchived(DomainError):
    code = "segment_archived"
    http_status = 409


class SegmentInUse(DomainError):
    """A segment still referenced by a flag's rules cannot be archived."""

    code = "segment_in_use"
    http_status = 409


# --- events the core cannot read: park them, never retry blindly -----------------------------


class UnreadableEvent(FlagstreamError):
    code = "unreadable_event"
    http_status = 500
    retriable = False


class UnknownEventType(UnreadableEvent):
    code = "unknown_event_type"


class UnsupportedSchemaVersion(UnreadableEvent):
    code = "unsupported_schema_version"


class MalformedEvent(UnreadableEvent):
    """Known type and schema, but the payload or envelope does not fit (or cannot apply to the state)."""

    code = "malformed_event"


class EventOutOfOrder(UnreadableEvent):
    """``evolve`` was given an event that is not the next one of the stream."""

    code = "event_out_of_order"
