"""core.transfer: the export document and the import plan (a field-level diff, deterministic)."""

from __future__ import annotations

from typing import Any

from core.model import Flag, Segment
from core.transfer import ExportDocument, build_export, plan_digest, plan_import

ON: dict[str, Any] = {"enabled": True, "default": {"variation": "on"}}
OFF: dict[str, Any] = {"enabled": False}


def _flag(key: str, **extra: Any) -> Flag:
    return Flag.model_validate({"key": key, **extra})


def _segment(key: str, **extra: Any) -> Segment:
    return Segment.model_validate({"key": key, **extra})


def test_export__one_environment__only_that_config_sorted() -> None:
    flags = [_flag("b", environments={"prod": ON, "dev": OFF}), _flag("a")]
    document = build_export(flags, [_segment("z"), _segment("y")], "prod")
    assert [f.key for f in document.flags] == ["a", "b"]
    assert list(document.flags[1].environments) == ["prod"]
    assert [s.key for s in document.segments] == ["y", "z"]
    assert ExportDocument.model_validate_json(document.model_dump_json()) == document


def test_plan__same_as_current__empty() -> None:
    flag, segment = _flag("a", environments={"prod": ON}), _segment("s")
    document = build_export([flag], [segment], None)
    assert plan_import(document, {"a": flag}, {"s": segment}) == []


def test_plan__new_and_changed__segments_first_with_diffs() -> None:
    current = _flag("a", name="A", environments={"prod": ON, "dev": OFF})
    incoming = _flag(
        "a", name="A2", environments={"prod": {**ON, "off_variation": "off"}, "dev": OFF, "qa": ON}
    )
    document = ExportDocument(
        flags=(incoming, _flag("new")), segments=(_segment("s", name="S2"), _segment("t"))
    )

    plan = plan_import(document, {"a": current}, {"s": _segment("s", name="S")})

    assert [(c.kind, c.key, c.action, c.environment) for c in plan] == [
        ("segment", "s", "update", None),
        ("segment", "t", "create", None),
        ("flag", "a", "update_metadata", None),
        ("flag", "a", "set_environment", "prod"),
        ("flag", "a", "set_environment", "qa"),
        ("flag", "new", "create", None),
    ]
    assert plan[0].diff == [{"path": "name", "before": "S", "after": "S2"}]
    assert plan[2].diff == [{"path": "name", "before": "A", "after": "A2"}]
    assert plan[3].diff == [{"path": "off_variation", "before": None, "after": "off"}]


def test_plan__one_environment__other_environments_ignored() -> None:
    current = _flag("a", environments={"prod": ON, "dev": OFF})
    incoming = _flag("a", environments={"prod": ON, "dev": ON})
    document = ExportDocument(environment="prod", flags=(incoming,))
    assert plan_import(document, {"a": current}, {}) == []


def test_plan__archived_in_document__archive_action() -> None:
    document = ExportDocument(flags=(_flag("a", archived=True),), segments=(_segment("s", archived=True),))
    plan = plan_import(document, {"a": _flag("a")}, {"s": _segment("s")})
    assert [(c.kind, c.action) for c in plan] == [("segment", "archive"), ("flag", "archive")]


def test_plan__archived_current_segment__left_alone() -> None:
    document = ExportDocument(segments=(_segment("s", name="new"),))
    assert plan_import(document, {}, {"s": _segment("s", archived=True)}) == []


def test_digest__stable_and_sensitive_to_the_plan() -> None:
    document = ExportDocument(flags=(_flag("a"),))
    first, again = plan_import(document, {}, {}), plan_import(document, {}, {})
    other = plan_import(ExportDocument(flags=(_flag("b"),)), {}, {})
    assert plan_digest(first) == plan_digest(again) != plan_digest(other)
    assert len(plan_digest(first)) == 16
