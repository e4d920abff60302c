"""Command models: key defaulting and which metadata fields an update sets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.commands import CreateFlag, CreateSegment, SetRollout, UpdateFlagMetadata
from core.model import Flag, Segment


def test_create_flag__no_flag_key__takes_flag_key_from_flag() -> None:
    assert CreateFlag(flag_key="checkout", flag=Flag(key="checkout")).flag_key == "checkout"
    assert CreateFlag.model_validate({"flag": {"key": "checkout"}}).flag_key == "checkout"


def test_create_flag__explicit_flag_key__is_kept() -> None:
    assert CreateFlag(flag_key="other", flag=Flag(key="checkout")).flag_key == "other"


def test_create_flag__no_flag__is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        CreateFlag.model_validate({"reason": "x"})


def test_create_segment__no_segment_key__takes_it_from_segment() -> None:
    assert CreateSegment(segment_key="beta", segment=Segment(key="beta")).segment_key == "beta"


def test_update_metadata__fields_left_out__are_not_changed() -> None:
    command = UpdateFlagMetadata(flag_key="f", name="N", description=None)
    assert command.changed_fields() == {"name": "N"}


def test_update_metadata__explicit_none_owner__clears_owner() -> None:
    assert UpdateFlagMetadata(flag_key="f", owner=None).changed_fields() == {"owner": None}


def test_set_rollout__empty_rollout__is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        SetRollout(flag_key="f", environment="production", rollout=())


def test_command__negative_expected_version__is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        UpdateFlagMetadata(flag_key="f", expected_version=-1)
