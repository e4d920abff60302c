"""Redriver registry, the operator-action view of a letter and the dead-letter event payloads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.events import DeadLetterRef, DeadLettersRedrivenPayload
from events.deadletters import DeadLetter
from events.deadletters.operations import RedriveResult, RedriverRegistry, describe_letter

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def _letter(letter_id: int = 1, stage: str = "relay", *, message: str = "boom") -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        stage=stage,  # type: ignore[arg-type]
        flag_key="checkout",
        version=2,
        event_id=uuid.UUID(int=letter_id),
        event_body=None,
        raw_record=None,
        error_class="MalformedEvent",
        error_message=message,
        attempts=1,
        first_failed_at=NOW,
        last_failed_at=NOW,
        kafka=None,
        status="redriven",
        resolved_at=NOW,
        resolved_by="ops",
        resolve_reason=None,
        reprocessed_at=None,
    )


async def _count(letters: Sequence[DeadLetter]) -> int:
    return len(letters)


def test_registry__registered_stage__returns_its_redriver_others_none() -> None:
    registry = RedriverRegistry()
    registry.register("relay", _count)
    assert registry.get("relay") is _count and registry.get("projector") is None


def test_registry__built_from_mapping__knows_each_stage() -> None:
    registry = RedriverRegistry({"projector": _count})
    assert registry.get("projector") is _count


def test_describe_letter__names_id_stage_flag_version_event_and_error() -> None:
    ref = describe_letter(_letter(5, "projector"))
    assert ref == DeadLetterRef(
        letter_id=5,
        stage="projector",
        flag_key="checkout",
        version=2,
        event_id=uuid.UUID(int=5),
        error_class="MalformedEvent",
        error_message="boom",
    )


def test_describe_letter__huge_error_message__truncated_to_fit_the_payload() -> None:
    ref = describe_letter(_letter(message="x" * 10_000))
    assert len(ref.error_message) == 4096


def test_redrive_result__counts_letters_by_stage() -> None:
    result = RedriveResult([_letter(1, "relay"), _letter(2, "projector"), _letter(3, "relay")], None)
    assert result.counts_by_stage() == {"relay": 2, "projector": 1}


def test_redriven_payload__no_letters__is_malformed() -> None:
    with pytest.raises(ValidationError):
        DeadLettersRedrivenPayload(letters=())
