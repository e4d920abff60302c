"""diff(): field-level changes with stable paths, in a deterministic order."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from core.diff import Change, diff, join_path


def as_tuples(changes: list[Change]) -> list[tuple[str, object, object]]:
    return [(c.path, c.before, c.after) for c in changes]


def test_diff__equal_documents__is_empty() -> None:
    doc: JsonValue = {"enabled": True, "rules": [{"id": "a"}]}
    assert diff(doc, {"enabled": True, "rules": [{"id": "a"}]}) == []


def test_diff__nested_weight_change__names_full_path() -> None:
    before: JsonValue = {
        "rules": [
            {"serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]}}
        ]
    }
    after: JsonValue = {
        "rules": [
            {"serve": {"rollout": [{"variation": "on", "weight": 80}, {"variation": "off", "weight": 20}]}}
        ]
    }
    assert as_tuples(diff(before, after)) == [
        ("rules[0].serve.rollout[0].weight", 50, 80),
        ("rules[0].serve.rollout[1].weight", 50, 20),
    ]


def test_diff__keys_added_and_removed__reported_in_sorted_key_order() -> None:
    assert as_tuples(diff({"b": 1, "a": 1}, {"c": {"x": 1}, "a": 2})) == [
        ("a", 1, 2),
        ("b", 1, None),
        ("c", None, {"x": 1}),
    ]


def test_diff__list_grows_and_shrinks__extra_items_reported_whole_by_index() -> None:
    assert as_tuples(diff({"t": [1]}, {"t": [1, {"k": 2}]})) == [("t[1]", None, {"k": 2})]
    assert as_tuples(diff({"t": [1, 2]}, {"t": [1]})) == [("t[1]", 2, None)]


def test_diff__same_value_different_json_type__is_a_change() -> None:
    assert as_tuples(diff({"v": 1}, {"v": True})) == [("v", 1, True)]
    assert as_tuples(diff({"v": 1}, {"v": 1.0})) == [("v", 1, 1.0)]
    assert as_tuples(diff({"v": [1]}, {"v": {"0": 1}})) == [("v", [1], {"0": 1})]


def test_diff__key_that_is_not_an_identifier__is_quoted() -> None:
    assert as_tuples(diff({"labels": {"team.name": "a"}}, {"labels": {"team.name": "b"}})) == [
        ('labels["team.name"]', "a", "b")
    ]
    assert join_path("", "1st") == '["1st"]'
    assert join_path("", "plain") == "plain"
    assert join_path("x", 3) == "x[3]"


def test_diff__scalars_at_root__use_given_path() -> None:
    assert as_tuples(diff(1, 2, path="enabled")) == [("enabled", 1, 2)]


# --- property: the diff is complete — patching `before` with it gives back `after` ---------------

_REMOVED = object()
_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _parse(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        assert match is not None, f"unparseable path {path!r} at {position}"
        name, index, quoted = match.groups()
        tokens.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        position = match.end()
    return tokens


def _patch(document: Any, changes: list[Change]) -> Any:
    document = copy.deepcopy(document)
    for change in changes:
        *parents, last = _parse(change.path)
        node = document
        for token in parents:
            node = node[token]
        value = _REMOVED if change.after is None else change.after
        if isinstance(node, list) and isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return _clean(document)


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if v is not _REMOVED}
    if isinstance(node, list):
        return [_clean(v) for v in node if v is not _REMOVED]
    return node


json_values = st.recursive(
    st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.sampled_from(["enabled", "rules", "a.b", "x y", "1st", ""]), json_values)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(json_objects, json_objects)
def test_diff__any_two_documents__patching_before_with_diff_gives_after(before: Any, after: Any) -> None:
    changes = diff(before, after)
    assert _patch(before, changes) == after
    assert [c.path for c in changes] == [c.path for c in diff(before, after)]  # deterministic
    assert (changes == []) == (json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True))
