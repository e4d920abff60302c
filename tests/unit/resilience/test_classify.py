from __future__ import annotations

import aiokafka.errors as kafka_errors
import asyncpg
import asyncpg.exceptions as pg_errors
import pytest
import redis.exceptions as redis_errors

from core.errors import FlagstreamError, MalformedEvent, UnknownEventType, VersionConflict
from events.resilience import CircuitOpen, classify, describe_error, is_retriable


class _OurRetriable(FlagstreamError):
    code = "test_retriable"
    retriable = True


RETRIABLE: list[BaseException] = [
    # aiokafka, by its own flag
    kafka_errors.KafkaConnectionError(),
    kafka_errors.NotLeaderForPartitionError(),
    kafka_errors.RequestTimedOutError(),
    kafka_errors.NodeNotReadyError(),
    kafka_errors.LeaderNotAvailableError(),
    kafka_errors.NotEnoughReplicasError(),
    kafka_errors.UnknownTopicOrPartitionError(),
    # aiokafka, by our overrides
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.BrokerNotAvailableError(),
    kafka_errors.CommitFailedError(),
    kafka_errors.RebalanceInProgressError(),
    kafka_errors.ProducerClosed(),
    # redis
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."),
    redis_errors.NoScriptError("NOSCRIPT No matching script."),
    redis_errors.ResponseError("BUSY Redis is busy running a script."),
    redis_errors.TryAgainError("TRYAGAIN"),
    # asyncpg
    pg_errors.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    pg_errors.CannotConnectNowError("the database system is starting up"),
    pg_errors.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    asyncpg.PostgresConnectionError("connection failure"),
    pg_errors.TooManyConnectionsError("sorry, too many clients already"),
    pg_errors.AdminShutdownError("terminating connection due to administrator command"),
    pg_errors.SerializationError("could not serialize access"),
    pg_errors.DeadlockDetectedError("deadlock detected"),
    pg_errors.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    # built-ins
    OSError(111, "Connection refused"),
    ConnectionResetError(),
    TimeoutError(),
    # ours
    _OurRetriable("store unavailable"),
    CircuitOpen("kafka", 3.0),
]

PERMANENT: list[BaseException] = [
    kafka_errors.MessageSizeTooLargeError(),
    kafka_errors.RecordTooLargeError(),
    kafka_errors.TopicAuthorizationFailedError(),
    kafka_errors.UnsupportedVersionError(),
    kafka_errors.InvalidTopicError(),
    kafka_errors.CorruptRecordException(),
    redis_errors.ResponseError("ERR Error running script (call to f_1234): @user_script:12: bad event"),
    redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis_errors.NoPermissionError("NOPERM"),
    redis_errors.AuthenticationError("WRONGPASS invalid username-password pair"),
    redis_errors.DataError("Invalid input of type: 'dict'"),
    pg_errors.UniqueViolationError("duplicate key value violates unique constraint"),
    pg_errors.NotNullViolationError("null value in column"),
    pg_errors.InvalidTextRepresentationError("invalid input syntax for type uuid"),
    pg_errors.UndefinedTableError('relation "nope" does not exist'),
    pg_errors.InvalidPasswordError("password authentication failed"),
    asyncpg.exceptions.ClientConfigurationError("bad dsn"),
    MalformedEvent("payload does not fit"),
    UnknownEventType("FlagTeleported"),
    VersionConflict(expected_version=1, current_version=2),
    ValueError("an unknown error"),
    KeyError("rules"),
]


@pytest.mark.parametrize("exc", RETRIABLE, ids=lambda e: type(e).__name__)
def test_classify__dependency_error__retriable(exc: BaseException) -> None:
    assert classify(exc) == "retriable"
    assert is_retriable(exc)


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: type(e).__name__)
def test_classify__event_or_configuration_error__permanent(exc: BaseException) -> None:
    assert classify(exc) == "permanent"
    assert not is_retriable(exc)


def test_classify__our_error_translated_from_driver__our_policy_wins() -> None:
    class _Rejected(FlagstreamError):
        retriable = False

    try:
        try:
            raise kafka_errors.KafkaConnectionError()
        except kafka_errors.KafkaConnectionError as e:
            raise _Rejected("refused by policy") from e
    except _Rejected as translated:
        assert classify(translated) == "permanent"


def test_classify__unknown_wrapper_of_driver_error__follows_the_cause() -> None:
    wrapper = RuntimeError("publish failed")
    wrapper.__cause__ = redis_errors.ConnectionError("Connection reset by peer")
    assert classify(wrapper) == "retriable"


def test_classify__retriable_attribute_read_from_instance_class__subclass_override_honoured() -> None:
    class _NowPermanent(_OurRetriable):
        retriable = False

    assert classify(_NowPermanent("x")) == "permanent"


def test_describe_error__empty_message__falls_back_to_repr() -> None:
    assert describe_error(TimeoutError()) == ("TimeoutError", "TimeoutError()")
    assert describe_error(ValueError("bad payload")) == ("ValueError", "bad payload")


def test_classify__exception_group__retriable_if_any_member_is() -> None:
    mixed = ExceptionGroup("tasks", [MalformedEvent("bad"), kafka_errors.KafkaConnectionError()])
    only_permanent = ExceptionGroup("tasks", [MalformedEvent("bad"), ValueError("x")])
    assert classify(mixed) == "retriable"
    assert classify(only_permanent) == "permanent"
