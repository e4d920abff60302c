"""Reading context attributes and testing scalar membership, shared by the operators."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

__all__ = [
    "Context",
    "Getter",
    "Matcher",
    "Test",
    "build_getter",
    "build_member_test",
    "fold",
    "is_number",
    "key_text",
]

Context = Mapping[str, Any]
Getter = Callable[[Context], Any]
Test = Callable[[Any], bool]
Matcher = Callable[[Context, datetime], bool]


def is_number(value: object) -> bool:
    """True for JSON numbers (``int``/``float``), false for booleans."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def key_text(value: Any) -> str | None:
    """A subject key as text: non-empty strings as they are, integers in decimal; else ``None``.

    Used for targeting keys, segment lists and rollout bucketing alike.
    """
    if isinstance(value, str):
        return str(value) if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def fold(text: str, case_insensitive: bool) -> str:
    return text.casefold() if case_insensitive else text


def build_getter(attribute: str) -> Getter:
    """A reader of ``attribute``: a top-level key, or a dotted path into nested objects.

    A key containing dots is looked up literally first, then as a path. ``None`` (JSON null)
    and anything unreachable read as ``None``, i.e. missing.
    """
    if "." not in attribute:

        def read_key(context: Context) -> Any:
            return context.get(attribute)

        return read_key
    parts = tuple(attribute.split("."))

    def read_path(context: Context) -> Any:
        value = context.get(attribute)
        if value is not None:
            return value
        current: Any = context
        for part in parts:
            if current.__class__ is not dict and not isinstance(current, Mapping):
                return None
            current = current.get(part)
        return current

    return read_path


def build_member_test(values: Iterable[object], case_insensitive: bool) -> Test:
    """A test "the scalar equals one of ``values``", with JSON typing (``true`` is not ``1``).

    Arrays and objects among ``values`` never match anything.
    """
    values = tuple(values)
    strings = frozenset(fold(v, case_insensitive) for v in values if isinstance(v, str))
    numbers = frozenset(v for v in values if is_number(v))
    booleans = frozenset(v for v in values if isinstance(v, bool))
    if not numbers and not booleans:
        if case_insensitive:

            def is_folded_string_member(value: Any) -> bool:
                return isinstance(value, str) and value.casefold() in strings

            return is_folded_string_member

        def is_string_member(value: Any) -> bool:
            return isinstance(value, str) and value in strings

        return is_string_member

    def is_member(value: Any) -> bool:
        if isinstance(value, str):
            return fold(value, case_insensitive) in strings
        if isinstance(value, bool):
            return value in booleans
        if isinstance(value, int | float):
            return value in numbers
        return False

    return is_member
