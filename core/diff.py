"""Field-level differences between two JSON documents, for audit trails.

``diff(before, after)`` walks both documents together and returns one :class:`Change` per leaf
that differs, in a deterministic order (object keys sorted, list items by index):

- objects are compared key by key; a key present on one side only is a change whose other
  side is ``None`` (absent and ``null`` are not distinguished);
- lists are compared **by index** (``rules[0]`` with ``rules[0]``): inserting a rule at the
  front therefore reports every later rule as changed. Items beyond the shorter list are
  reported whole (``rules[2]``: ``None`` -> ``{...}``);
- anything else is a leaf, compared by value *and* JSON type (``1`` and ``true`` differ).

Paths read like ``rules[0].serve.rollout[1].weight``; a key that is not a plain identifier is
quoted: ``labels["team.name"]``.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, JsonValue

__all__ = ["Change", "diff", "join_path"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class Change(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    before: JsonValue = None
    after: JsonValue = None


def join_path(prefix: str, key: str | int) -> str:
    """Append an object key or a list index to a field path."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    part = key if _PLAIN_KEY.match(key) else f"[{json.dumps(key, ensure_ascii=False)}]"
    if not prefix or part.startswith("["):
        return f"{prefix}{part}"
    return f"{prefix}.{part}"


def diff(before: JsonValue, after: JsonValue, *, path: str = "") -> list[Change]:
    """Every leaf that differs between ``before`` and ``after``, in a deterministic order."""
    changes: list[Change] = []
    _walk(before, after, path, changes)
    return changes


def _walk(before: JsonValue, after: JsonValue, path: str, out: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            _walk(before.get(key), after.get(key), join_path(path, key), out)
    elif isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            left = before[index] if index < len(before) else None
            right = after[index] if index < len(after) else None
            _walk(left, right, join_path(path, index), out)
    elif not _same(before, after):
        out.append(Change(path=path, before=before, after=after))


def _same(left: JsonValue, right: JsonValue) -> bool:
    return type(left) is type(right) and left == right
