from __future__ import annotations

import pytest

from events.ports import plan_append
from events.store.keys import looks_like_secret
from tests.unit.events.factories import make_chain, make_event


def test_plan_append__two_streams__first_version_of_each() -> None:
    batch = [*make_chain("a", 2, start=3), make_event("b", 1)]
    assert plan_append(batch) == {"a": 3, "b": 1}


def test_plan_append__same_event_twice__refused() -> None:
    event = make_event("a", 1)
    with pytest.raises(ValueError, match="twice"):
        plan_append([event, event])


@pytest.mark.parametrize(
    ("secret", "valid"),
    [
        ("fs_" + "A" * 43, True),
        ("fs_" + "A" * 42, False),
        ("null", False),
        ("", False),
        ("xx_" + "A" * 43, False),
    ],
)
def test_looks_like_secret__shape_only(secret: str, valid: bool) -> None:
    assert looks_like_secret(secret) is valid
