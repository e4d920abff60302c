"""Test helpers: sealed, hash-chained events of flag and segment streams (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import GENESIS_HASH, Event, EventDraft, seal
from core.model import EnvironmentConfig, Flag, Segment

__all__ = ["StreamWriter", "flag_doc", "on_config"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def on_config(enabled: bool = True, *, rules: list[dict[str, Any]] | None = None) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate(
        {"enabled": enabled, "off_variation": "off", "default": {"variation": "on"}, "rules": rules or []}
    )


def flag_doc(key: str, *environments: str) -> Flag:
    return Flag(key=key, environments={env: on_config(False) for env in environments})


class StreamWriter:
    """Seals the next event of any stream, keeping versions and the hash chain."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[int, str]] = {}
        self._clock = 0

    def next(
        self, stream: str, event_type: str, payload: dict[str, Any], environment: str | None = None
    ) -> Event:
        version, prev = self._heads.get(stream, (0, GENESIS_HASH))
        self._clock += 1
        event = seal(
            EventDraft(type=event_type, environment=environment, payload=payload),
            event_id=uuid.uuid4(),
            flag_key=stream,
            version=version + 1,
            prev_hash=prev,
            occurred_at=_EPOCH + timedelta(seconds=self._clock),
            actor="tester",
        )
        self._heads[stream] = (event.version, event.hash)
        return event

    def create(self, flag: Flag) -> Event:
        return self.next(flag.key, "FlagCreated", {"flag": flag.model_dump(mode="json", by_alias=True)})

    def configure(self, key: str, environment: str, config: EnvironmentConfig) -> Event:
        payload = {"config": config.model_dump(mode="json", by_alias=True), "diff": []}
        return self.next(key, "EnvironmentConfigured", payload, environment)

    def archive(self, key: str) -> Event:
        return self.next(key, "FlagArchived", {})

    def metadata(self, key: str, **changes: Any) -> Event:
        return self.next(key, "FlagMetadataUpdated", {"changes": changes, "diff": []})

    def create_segment(self, segment: Segment) -> Event:
        payload = {"segment": segment.model_dump(mode="json", by_alias=True)}
        return self.next(f"segment:{segment.key}", "SegmentCreated", payload)

    def update_segment(self, segment: Segment) -> Event:
        payload = {"segment": segment.model_dump(mode="json", by_alias=True), "diff": []}
        return self.next(f"segment:{segment.key}", "SegmentUpdated", payload)
