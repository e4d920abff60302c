"""Error classification, done once: is an error the dependency's fault or the event's?

``retriable``: trying the same thing again later may succeed — a connection lost, a timeout, a
leader change, a server starting or shutting down, a serialisation conflict. These count as
failures of the dependency (they trip circuit breakers), are retried with backoff, and never
reach the dead-letter queue.

``permanent``: trying again cannot succeed without a change somewhere else — a record too large,
an authorisation refused, a script error, a constraint violated, an event that cannot be parsed
or applied. These are the event's fault: they do not trip breakers (the dependency answered), are
not retried, and are parked in the dead-letter queue.

Rules, first match wins:

1. our own errors (:class:`core.errors.FlagstreamError`) carry the policy: ``retriable`` ClassVar;
2. aiokafka: an explicit table of overrides, else aiokafka's own ``retriable`` attribute;
3. redis-py: connection/timeout errors retriable, server answers by kind, else permanent;
4. asyncpg: by SQLSTATE class (``08`` connection, ``40`` rollback, ``53`` resources,
   ``57`` operator intervention, ``58`` system) retriable; client-side connection states retriable;
5. exception groups (``asyncio.TaskGroup``): retriable if any member is;
6. built-ins: ``TimeoutError`` (``asyncio.TimeoutError``) and ``OSError`` retriable;
7. otherwise, the cause (``raise ... from e``) is classified; with no cause: ``permanent``
   (an unknown error is parked where an operator sees it, rather than retried forever).

The table is in ``docs/failure-handling.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import aiokafka.errors as kafka_errors
import asyncpg
import asyncpg.exceptions as pg_errors
import redis.exceptions as redis_errors

from core.errors import FlagstreamError

__all__ = ["Classification", "classify", "describe_error", "is_retriable"]

Classification = Literal["retriable", "permanent"]
_Rule = Callable[[BaseException], Classification | None]

# aiokafka's own flags, corrected where they do not fit a publisher/consumer that keeps its work:
# a send that timed out, a broker not available, a group rebalancing or a producer being closed
# are the dependency's state, never the record's fault.
_KAFKA_RETRIABLE: Final[tuple[type[BaseException], ...]] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.BrokerNotAvailableError,
    kafka_errors.ReplicaNotAvailableError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.CommitFailedError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
    kafka_errors.ProducerClosed,
    kafka_errors.ConsumerStoppedError,
    kafka_errors.Cancelled,
)

# Server answers that say "not now" rather than "never".
_REDIS_RETRIABLE_ANSWERS: Final[tuple[type[BaseException], ...]] = (
    redis_errors.ReadOnlyError,  # failover: we talk to a replica
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # includes MasterDownError
    redis_errors.OutOfMemoryError,
    redis_errors.NoScriptError,  # script cache flushed by a restart: load it again
    redis_errors.WatchError,  # optimistic transaction lost a race
    redis_errors.InvalidResponse,  # protocol desynchronised: a new connection fixes it
)
_REDIS_PERMANENT_CONNECTION: Final[tuple[type[BaseException], ...]] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
)
_REDIS_BUSY_PREFIX: Final = "BUSY "  # "BUSY Redis is busy running a script"

_PG_RETRIABLE_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})
_PG_RETRIABLE_STATES: Final = frozenset({"55P03", "55006"})  # lock_not_available, object_in_use
_PG_RETRIABLE_CLIENT: Final[tuple[type[BaseException], ...]] = (
    pg_errors.OutdatedSchemaCacheError,
    pg_errors.ProtocolError,
    pg_errors.TargetServerAttributeNotMatched,
)


def _classify_own(exc: BaseException) -> Classification | None:
    if isinstance(exc, FlagstreamError):
        return "retriable" if getattr(exc, "retriable", False) else "permanent"
    return None


def _classify_kafka(exc: BaseException) -> Classification | None:
    if isinstance(exc, _KAFKA_RETRIABLE):
        return "retriable"
    if isinstance(exc, kafka_errors.KafkaError):
        return "retriable" if getattr(exc, "retriable", False) else "permanent"
    return None


def _classify_redis(exc: BaseException) -> Classification | None:
    if not isinstance(exc, redis_errors.RedisError):
        return None
    if isinstance(exc, _REDIS_PERMANENT_CONNECTION):
        return "permanent"
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return "retriable"  # includes BusyLoadingError and MaxConnectionsError
    if isinstance(exc, _REDIS_RETRIABLE_ANSWERS):
        return "retriable"
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_REDIS_BUSY_PREFIX):
        return "retriable"
    return "permanent"  # script errors, wrong types, NOPERM, EXECABORT, client-side DataError


_BROKEN_PROTOCOL_STATE = "another operation"


def _classify_postgres(exc: BaseException) -> Classification | None:
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in _PG_RETRIABLE_CLASSES or sqlstate in _PG_RETRIABLE_STATES:
            return "retriable"
        return "permanent"  # data (22), integrity (23), authorisation (28), syntax (42) ...
    if isinstance(exc, _PG_RETRIABLE_CLIENT):
        return "retriable"
    if type(exc) is asyncpg.InterfaceError:
        return "retriable"  # "connection is closed", "pool is closing": the connection's state
    if isinstance(exc, pg_errors.InternalClientError) and _BROKEN_PROTOCOL_STATE in str(exc):
        # "cannot switch to state N; another operation (M) is in progress": the server went away
        # mid-operation (seen at COMMIT while Postgres restarts) — the connection's state, not ours
        return "retriable"
    if isinstance(exc, asyncpg.InterfaceError | pg_errors.InternalClientError):
        return "permanent"  # client configuration, unsupported features
    return None


def _classify_group(exc: BaseException) -> Classification | None:
    """A task group's errors: retriable if any member is (the work is redone; a permanent member
    shows up on its own next time, and is parked then)."""
    if isinstance(exc, BaseExceptionGroup):
        return "retriable" if any(classify(e) == "retriable" for e in exc.exceptions) else "permanent"
    return None


def _classify_builtin(exc: BaseException) -> Classification | None:
    if isinstance(exc, TimeoutError | OSError):  # asyncio.TimeoutError is TimeoutError
        return "retriable"
    return None


_RULES: Final[tuple[_Rule, ...]] = (
    _classify_own,
    _classify_kafka,
    _classify_redis,
    _classify_postgres,
    _classify_group,
    _classify_builtin,
)
_MAX_CAUSE_DEPTH: Final = 8


def classify(exc: BaseException) -> Classification:
    """``"retriable"`` or ``"permanent"`` for any error an adapter or a worker may see."""
    current: BaseException | None = exc
    for _ in range(_MAX_CAUSE_DEPTH):
        if current is None:
            break
        for rule in _RULES:
            verdict = rule(current)
            if verdict is not None:
                return verdict
        current = current.__cause__
    return "permanent"


def is_retriable(exc: BaseException) -> bool:
    return classify(exc) == "retriable"


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error_class, error_message)`` as stored in a dead letter and used as a metric label."""
    message = str(exc) or repr(exc)
    return type(exc).__name__, message
