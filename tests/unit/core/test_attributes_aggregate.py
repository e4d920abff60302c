"""core.attributes.ContextTypeAggregate: bounded, names and types only, pending until taken."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from core.attributes import ContextTypeAggregate, context_attribute_types, type_of_value


def test_aggregate__new_names_and_types__pending_once() -> None:
    aggregate = ContextTypeAggregate(max_names=10)
    aggregate.add({"email": "a@b.example", "geo": {"country": "FR"}})
    aggregate.add({"email": "c@d.example"})  # nothing new

    assert aggregate.take_pending() == {"email": {"string"}, "geo.country": {"string"}}
    assert not aggregate.has_pending

    aggregate.add({"email": None, "geo": {"country": "FR"}})

    assert aggregate.take_pending() == {"email": {"null"}}
    assert "a@b.example" not in repr(aggregate.__dict__) and "FR" not in repr(aggregate.__dict__)


def test_aggregate__full__new_names_dropped_known_names_still_typed() -> None:
    aggregate = ContextTypeAggregate(max_names=2)
    aggregate.add({"a": 1, "b": 2})
    aggregate.take_pending()

    aggregate.add({"c": 3, "a": "x"})

    assert aggregate.take_pending() == {"a": {"string"}}


def test_aggregate__given_back__pending_again_merged() -> None:
    aggregate = ContextTypeAggregate(max_names=10)
    aggregate.add({"a": 1})
    taken = aggregate.take_pending()
    aggregate.add({"a": True})

    aggregate.give_back(taken)

    assert aggregate.has_pending
    assert aggregate.take_pending() == {"a": {"number", "boolean"}}


class _Text(str):
    pass


class _Count(int):
    pass


class _Items(list[int]):
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [(_Text("x"), "string"), (_Count(3), "number"), (_Items([1]), "array"), ({1, 2}, "object")],
)
def test_type_of_value__subclasses__their_json_type(value: Any, name: str) -> None:
    assert type_of_value(value) == name


def test_context_types__mapping_subclass_walked__odd_keys_and_long_names_skipped() -> None:
    context: dict[Any, Any] = {
        "geo": MappingProxyType({"city": "x"}),
        7: "seven",
        "n" * 300: 1,
        "ok": OrderedDict(),
    }

    assert context_attribute_types(context) == {"geo.city": "string"}
