"""The error tree: stable codes, HTTP statuses, retriability, JSON body."""

from __future__ import annotations

import pytest

from core import errors
from core.errors import DomainError, FlagstreamError, InvalidConfiguration, UnreadableEvent, VersionConflict

EXPECTED = {
    errors.FlagNotFound: ("flag_not_found", 404),
    errors.FlagExists: ("flag_exists", 409),
    errors.FlagArchived: ("flag_archived", 409),
    errors.InvalidConfiguration: ("invalid_configuration", 422),
    errors.InvalidCommand: ("invalid_command", 422),
    errors.EnvironmentNotFound: ("environment_not_found", 404),
    errors.SegmentNotFound: ("segment_not_found", 404),
    errors.SegmentExists: ("segment_exists", 409),
    errors.SegmentArchived: ("segment_archived", 409),
    errors.SegmentInUse: ("segment_in_use", 409),
}


@pytest.mark.parametrize(
    ("error_type", "expected"), EXPECTED.items(), ids=lambda v: getattr(v, "__name__", "")
)
def test_domain_error__class__has_stable_code_and_status(
    error_type: type[DomainError], expected: tuple[str, int]
) -> None:
    error = error_type("boom")
    assert (error.code, error.http_status) == expected
    assert isinstance(error, DomainError) and not error.retriable


def test_codes__every_error_class__is_unique() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))


def test_to_dict__details__stable_json_body() -> None:
    error = InvalidConfiguration(
        "bad", details=[{"path": "rules[0].serve.rollout[1].variation", "message": "x"}]
    )
    assert error.to_dict() == {
        "code": "invalid_configuration",
        "message": "bad",
        "retriable": False,
        "details": [{"path": "rules[0].serve.rollout[1].variation", "message": "x"}],
    }
    assert str(error) == "bad"
    assert repr(error) == "InvalidConfiguration(code='invalid_configuration', message='bad')"


def test_version_conflict__carries_expected_and_current_version() -> None:
    error = VersionConflict(expected_version=3, current_version=5, stream="checkout")
    assert (error.expected_version, error.current_version) == (3, 5)
    assert error.message == "expected version 3 but checkout is at version 5"
    assert error.to_dict()["current_version"] == 5


def test_unreadable_events__never_retriable_and_server_side() -> None:
    for error_type in (
        errors.UnknownEventType,
        errors.UnsupportedSchemaVersion,
        errors.MalformedEvent,
        errors.EventOutOfOrder,
    ):
        assert issubclass(error_type, UnreadableEvent)
        assert not error_type.retriable and error_type.http_status == 500


def test_subclass__infrastructure_error__inherits_generic_behaviour() -> None:
    class StoreUnavailable(FlagstreamError):
        code = "store_unavailable"
        http_status = 503
        retriable = True

    error = StoreUnavailable("postgres is down")
    assert error.to_dict()["retriable"] is True and error.details == []
    assert FlagstreamError("x").code == "internal_error"
