"""The state of one stream (a flag, or a segment), and the catalog ``decide`` validates against.

``evolve`` / ``replay`` (which build these states from events) live in :mod:`core.evolve`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.conditions import condition_segments, segment_references
from core.envelope import GENESIS_HASH, SEGMENT_STREAM_PREFIX
from core.model import Flag, Segment

__all__ = ["Catalog", "FlagState", "SegmentState"]


class FlagState(BaseModel):
    """A flag stream folded into one value. ``version == 0`` means the flag does not exist."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    version: int = Field(default=0, ge=0)
    last_hash: str = GENESIS_HASH
    flag: Flag | None = None
    env_versions: dict[str, int] = Field(default_factory=dict)
    updated_at: AwareDatetime | None = None

    @property
    def exists(self) -> bool:
        return self.flag is not None

    @property
    def stream(self) -> str:
        return self.key


class SegmentState(BaseModel):
    """A segment stream folded into one value. ``version == 0`` means the segment does not exist."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    version: int = Field(default=0, ge=0)
    last_hash: str = GENESIS_HASH
    segment: Segment | None = None
    updated_at: AwareDatetime | None = None

    @property
    def exists(self) -> bool:
        return self.segment is not None

    @property
    def stream(self) -> str:
        """The stream (envelope ``flag_key``) this segment's events travel in."""
        return f"{SEGMENT_STREAM_PREFIX}{self.key}"


@dataclass(frozen=True, slots=True)
class Catalog:
    """What validation needs to know about everything *outside* the stream being decided.

    - ``segment_keys``: live (not archived) segments a rule may reference;
    - ``flag_variations``: variation keys of every live flag (prerequisites must name one);
    - ``prerequisites``: per environment, each live flag's prerequisite flag keys
      (used to detect cycles);
    - ``segment_users``: per segment key, the live flags whose rules reference it;
    - ``segment_dependencies``: per live segment, the segments its condition references
      (used to detect cycles, and to refuse archiving a segment another one uses).

    The flag being decided may appear in the catalog: validation always uses the command's new
    version of it instead.
    """

    segment_keys: frozenset[str] = frozenset()
    flag_variations: Mapping[str, frozenset[str]] = field(default_factory=dict)
    prerequisites: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    segment_users: Mapping[str, frozenset[str]] = field(default_factory=dict)
    segment_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, flags: Iterable[Flag] = (), segments: Iterable[Segment] = ()) -> Catalog:
        """A catalog from the current flags and segments (archived ones are left out)."""
        live_flags = [f for f in flags if not f.archived]
        variations = {f.key: frozenset(v.key for v in f.variations) for f in live_flags}
        prerequisites: dict[str, dict[str, frozenset[str]]] = {}
        users: dict[str, set[str]] = {}
        for flag in live_flags:
            for env, config in flag.environments.items():
                prerequisites.setdefault(env, {})[flag.key] = frozenset(p.flag for p in config.prerequisites)
            for segment_key in segment_references(flag):
                users.setdefault(segment_key, set()).add(flag.key)
        live_segments = [s for s in segments if not s.archived]
        return cls(
            segment_keys=frozenset(s.key for s in live_segments),
            flag_variations=variations,
            prerequisites=prerequisites,
            segment_users={k: frozenset(v) for k, v in users.items()},
            segment_dependencies={s.key: condition_segments(s.when) for s in live_segments},
        )
