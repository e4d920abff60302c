"""Structural limits of JSON bodies: depth, array length, key length, NUL characters, with field paths."""

from __future__ import annotations

import orjson
import pytest

from api.bodyguard import MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_KEY_LENGTH, inspect_json


def _nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"tags": ["t"] * (MAX_ARRAY_ITEMS + 1)}, ("tags", f"more than {MAX_ARRAY_ITEMS} items")),
        ({"rules": [{"id": "a\x00b"}]}, ("rules[0].id", "contains a NUL character")),
        ({"context": {"e\x00mail": 1}}, ("context", "an object key contains a NUL character")),
        (
            {"context": {"k" * (MAX_KEY_LENGTH + 1): 1}},
            ("context", f"an object key is longer than {MAX_KEY_LENGTH} characters"),
        ),
    ],
)
def test_inspect_json__problem_named_with_its_path(document: object, expected: tuple[str, str]) -> None:
    assert inspect_json(orjson.dumps(document)) == expected


def test_inspect_json__too_deep__at_our_limit_and_beyond_the_parsers() -> None:
    assert inspect_json(_nested(MAX_DEPTH + 2)) is not None
    assert inspect_json(b"[" * 5000 + b"]" * 5000) == ("$", f"nested deeper than {MAX_DEPTH} levels")


def test_inspect_json__sane_bodies_and_non_json__pass() -> None:
    sane = {"tags": ["t"] * MAX_ARRAY_ITEMS, "context": {"email": "a@b.c", "n": [1, 2, {"x": None}]}}
    assert inspect_json(orjson.dumps(sane)) is None
    assert inspect_json(_nested(MAX_DEPTH - 1)) is None
    assert inspect_json(b"not json") is None
    assert inspect_json(b"") is None
