"""Incremental hash-chain checking over an interleaved log, one stream at a time, memory flat.

:func:`core.envelope.verify_chain` checks one stream from version 1 given all its events. A
replay of the whole log sees every stream interleaved, so :class:`ChainTracker` keeps only the
last ``(version, hash)`` of each stream and applies the same rules event by event, returning the
same :class:`~core.envelope.ChainBreak` values (``tampered``, ``broken_link``, ``gap``,
``duplicate``, ``wrong_stream``) plus ``unreadable`` for a record that is not an event.

Redeliveries (at-least-once publishing) are tolerated and counted: an event equal to the
stream's last one (same hash, hence same ``event_id`` and content) is an exact redelivery; an
intact event of an *older* version is a redelivery that cannot be compared here (only the last
hash is kept) and is returned as :attr:`Step.OLDER_DUPLICATE` so a caller can confirm it against
another source (the Postgres table).

Hashing fast path: the fields are re-serialised with orjson (sorted keys, compact) and hashed;
when that does not match, the exact :func:`core.envelope.compute_hash` decides, so a difference
between the two serialisers (float spelling, escapes) can never produce a false verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

from core.envelope import GENESIS_HASH, ChainBreak, compute_hash

__all__ = ["ChainTracker", "Step", "StepResult", "is_intact", "parse_fields"]

_REQUIRED = ("event_id", "flag_key", "version", "prev_hash", "hash")


class Step(StrEnum):
    OK = "ok"
    REDELIVERY = "redelivery"
    OLDER_DUPLICATE = "older_duplicate"
    BREAK = "break"


@dataclass(frozen=True, slots=True)
class StepResult:
    step: Step
    breach: ChainBreak | None = None


def parse_fields(raw: bytes | str) -> dict[str, Any] | None:
    """The JSON object of a record, or ``None`` when it is not an event envelope."""
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict) or any(k not in fields for k in _REQUIRED):
        return None
    if not isinstance(fields["version"], int) or not isinstance(fields["flag_key"], str):
        return None
    return fields


def is_intact(fields: dict[str, Any], raw: bytes | str | None = None) -> bool:
    """Does ``hash`` match the content (everything but ``hash``)?

    With ``raw`` (the record's text): when it is the canonical text, removing its top-level
    ``,"hash":"<64 hex>"`` member leaves exactly the canonical text that was hashed (the member
    is the first ``,"hash":"`` in canonical text: only string fields precede it and a ``"``
    inside a JSON string is always escaped), so one SHA-256 over the bytes decides. Anything
    else falls through to the re-serialising paths.
    """
    claimed = fields.get("hash")
    if not isinstance(claimed, str):
        return False
    if raw is not None and _hash_of_text(raw, claimed) == claimed:
        return True
    body = {k: v for k, v in fields.items() if k != "hash"}
    try:
        fast = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    except TypeError:
        fast = ""
    if fast == claimed:
        return True
    try:
        return compute_hash(fields) == claimed
    except (TypeError, ValueError):
        return False


_HASH_MEMBER = b',"hash":"'


def _hash_of_text(raw: bytes | str, claimed: str) -> str:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    at = data.find(_HASH_MEMBER)
    end = at + len(_HASH_MEMBER) + 64
    if at < 0 or data[end:end + 1] != b'"' or data[at + len(_HASH_MEMBER):end] != claimed.encode("ascii"):
        return ""
    return hashlib.sha256(data[:at] + data[end + 1:]).hexdigest()


def _event_id(fields: dict[str, Any]) -> UUID | None:
    try:
        return UUID(str(fields["event_id"]))
    except ValueError:
        return None


@dataclass(slots=True)
class ChainTracker:
    """Per-stream last ``(version, hash)``; feed events in log order with :meth:`check`.

    ``partial_start``: a stream may start at any version (an export cut by ``since``); its first
    event is then trusted as the anchor (its ``prev_hash`` is not checked).
    """

    partial_start: bool = False
    last: dict[str, tuple[int, str]] = field(default_factory=dict)
    events: int = 0
    redeliveries: int = 0
    older_duplicates: int = 0
    breaks: int = 0

    def check(self, fields: dict[str, Any] | None, *, record_key: str | None = None,
              raw: bytes | str | None = None) -> StepResult:
        self.events += 1
        if fields is None:
            breach = ChainBreak(record_key or "?", 0, None, "unreadable", "record is not an event")
            return self._broken(breach)
        key: str = fields["flag_key"]
        version: int = fields["version"]
        if record_key is not None and record_key != key:
            return self._broken(ChainBreak(key, version, _event_id(fields), "wrong_stream",
                                           f"event of stream {key!r} under record key {record_key!r}"))
        result = self._check_link(key, version, fields, raw)
        if result.step is Step.BREAK or result.step is Step.OK:
            self.last[key] = (version, fields["hash"])
        return result

    def _check_link(self, key: str, version: int, fields: dict[str, Any],
                    raw: bytes | str | None) -> StepResult:
        intact = is_intact(fields, raw)
        previous = self.last.get(key)
        if previous is None and self.partial_start:
            previous = (version - 1, fields["prev_hash"])
        last_version, last_hash = previous or (0, GENESIS_HASH)
        if version <= last_version:
            return self._duplicate(key, version, fields, intact, last_version, last_hash)
        if version > last_version + 1:
            return self._broken(ChainBreak(key, last_version + 1, None, "gap",
                                           f"version {last_version + 1} missing (next present is {version})"))
        if not intact:
            return self._broken(ChainBreak(key, version, _event_id(fields), "tampered",
                                           "hash does not match the event's content"))
        if fields["prev_hash"] != last_hash:
            return self._broken(ChainBreak(key, version, _event_id(fields), "broken_link",
                                           "prev_hash does not match the previous event's hash"))
        return StepResult(Step.OK)

    def _duplicate(self, key: str, version: int, fields: dict[str, Any], intact: bool,
                   last_version: int, last_hash: str) -> StepResult:
        if not intact:
            return self._broken(ChainBreak(key, version, _event_id(fields), "tampered",
                                           "hash does not match the event's content (redelivered version)"))
        if version == last_version and fields["hash"] == last_hash:
            self.redeliveries += 1
            return StepResult(Step.REDELIVERY)
        if version == last_version:
            return self._broken(ChainBreak(key, version, _event_id(fields), "duplicate",
                                           f"a different event claims version {version}"))
        self.older_duplicates += 1
        return StepResult(Step.OLDER_DUPLICATE)

    def _broken(self, breach: ChainBreak) -> StepResult:
        self.breaks += 1
        return StepResult(Step.BREAK, breach)
