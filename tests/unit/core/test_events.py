"""Event payloads and schema evolution: read_payload upcasts old shapes and refuses unknown ones."""

from __future__ import annotations

import pytest
from pydantic import JsonValue

from core.envelope import GENESIS_HASH, EventDraft
from core.errors import MalformedEvent, UnknownEventType, UnsupportedSchemaVersion
from core.events import (
    PAYLOAD_TYPES,
    AlertInfo,
    EventType,
    FlagCreatedPayload,
    RollbackSkippedPayload,
    current_schema_version,
    read_payload,
    register_upcaster,
    to_draft,
)
from core.evolve import evolve
from core.model import Flag
from core.state import FlagState
from tests.unit.core._streams import seal_next


def test_payload_types__every_event_type__has_a_payload_model() -> None:
    assert set(PAYLOAD_TYPES) == {t.value for t in EventType}


def test_to_draft__payload__round_trips_through_read_payload() -> None:
    payload = FlagCreatedPayload(
        flag=Flag.model_validate(
            {
                "key": "f",
                "environments": {
                    "production": {
                        "rules": [
                            {
                                "id": "r",
                                "when": {"not": {"attribute": "a", "op": "exists"}},
                                "serve": {"variation": "on"},
                            }
                        ]
                    }
                },
            }
        )
    )
    draft = to_draft(payload)
    assert (draft.type, draft.schema_version, draft.environment) == ("FlagCreated", 1, None)
    assert "not" in str(draft.payload)  # serialised by alias: the public JSON shape
    assert read_payload(draft) == payload


def test_read_payload__rollback_skipped_v1__is_upcast_to_v2() -> None:
    old = EventDraft(
        type="RollbackSkipped",
        schema_version=1,
        environment="production",
        payload={"environment": "production", "reason": "cooldown", "alert_fingerprint": "fp1"},
    )
    assert read_payload(old) == RollbackSkippedPayload(
        environment="production", why="cooldown", alert=AlertInfo(fingerprint="fp1")
    )


def test_read_payload__rollback_skipped_v1_without_alert__upcasts_to_no_alert() -> None:
    old = EventDraft(
        type="RollbackSkipped", schema_version=1, payload={"environment": "staging", "reason": "dry"}
    )
    payload = read_payload(old)
    assert isinstance(payload, RollbackSkippedPayload) and payload.alert is None and payload.why == "dry"


def test_evolve__sealed_v1_event__is_read_through_the_upcaster() -> None:
    created = seal_next(to_draft(FlagCreatedPayload(flag=Flag(key="f"))), "f", 1, GENESIS_HASH)
    state = evolve(FlagState(key="f"), created)
    old = EventDraft(
        type="RollbackSkipped",
        schema_version=1,
        environment="production",
        payload={"environment": "production", "reason": "cooldown"},
    )
    state = evolve(state, seal_next(old, "f", 2, state.last_hash))
    assert state.version == 2


def test_read_payload__unknown_type__raises_unknown_event_type() -> None:
    with pytest.raises(UnknownEventType) as caught:
        read_payload(EventDraft(type="FlagExploded"))
    assert caught.value.code == "unknown_event_type" and not caught.value.retriable


def test_read_payload__newer_schema_version__raises_unsupported_schema_version() -> None:
    with pytest.raises(UnsupportedSchemaVersion, match=r"knows 1\.\.2"):
        read_payload(EventDraft(type="RollbackSkipped", schema_version=3, payload={}))


def test_read_payload__schema_version_zero__raises_unsupported_schema_version() -> None:
    with pytest.raises(UnsupportedSchemaVersion):
        read_payload(EventDraft(type="FlagArchived", schema_version=0))


def test_read_payload__missing_upcaster__raises_unsupported_schema_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import events

    monkeypatch.delitem(events._UPCASTERS, ("RollbackSkipped", 1))
    with pytest.raises(UnsupportedSchemaVersion, match="no upcaster"):
        read_payload(EventDraft(type="RollbackSkipped", schema_version=1, payload={}))


def test_read_payload__payload_of_wrong_shape__raises_malformed_event() -> None:
    with pytest.raises(MalformedEvent):
        read_payload(EventDraft(type="FlagCreated", payload={"flag": {"key": "BAD KEY"}}))
    with pytest.raises(MalformedEvent):
        read_payload(EventDraft(type="FlagArchived", payload={"surprise": 1}))


def test_register_upcaster__new_function__is_used_for_that_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import events

    monkeypatch.setitem(events._UPCASTERS, ("RollbackSkipped", 1), events._UPCASTERS[("RollbackSkipped", 1)])

    @register_upcaster("RollbackSkipped", 1)
    def _always_dry(data: dict[str, JsonValue]) -> dict[str, JsonValue]:
        return {"environment": "production", "why": "dry run"}

    payload = read_payload(EventDraft(type="RollbackSkipped", schema_version=1, payload={}))
    assert isinstance(payload, RollbackSkippedPayload) and payload.why == "dry run"


def test_current_schema_version__known_types__are_reported() -> None:
    assert current_schema_version("RollbackSkipped") == 2
    assert current_schema_version("FlagEnabled") == 1
