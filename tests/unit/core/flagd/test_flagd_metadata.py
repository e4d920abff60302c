"""flagd ``metadata`` through import, plan and export: kept, merged (flag wins), written back."""

from __future__ import annotations

from typing import Any

from core.commands import UpdateFlagMetadata
from core.flagd import ImportAction, export_flagd, import_flagd, plan_import
from core.model import Flag

ENV = "production"
BOOL = {"on": True, "off": False}


def _flag(metadata: dict[str, Any] | None = None, **spec: Any) -> Flag:
    definition = {"variants": BOOL, "defaultVariant": "off", **spec}
    if metadata is not None:
        definition["metadata"] = metadata
    return import_flagd({"flags": {"f": definition}}, ENV)[0]


def test_export__flag_metadata__written_beside_the_definition() -> None:
    enabled = _flag({"team": "x", "n": 1, "beta": True})
    disabled = _flag({"team": "y"}, state="DISABLED")

    assert export_flagd([enabled], ENV)["flags"]["f"]["metadata"] == {"team": "x", "n": 1, "beta": True}
    assert export_flagd([disabled], ENV)["flags"]["f"]["metadata"] == {"team": "y"}


def test_export__no_metadata__no_metadata_key() -> None:
    assert "metadata" not in export_flagd([_flag()], ENV)["flags"]["f"]


def test_round_trip__document_metadata__lands_on_each_flag_and_stays() -> None:
    document = {
        "metadata": {"flagSetId": "shop"},
        "flags": {"f": {"variants": BOOL, "defaultVariant": "off", "metadata": {"team": "x"}}},
    }

    exported = export_flagd(import_flagd(document, ENV), ENV)
    again = export_flagd(import_flagd(exported, ENV), ENV)

    assert exported["flags"]["f"]["metadata"] == {"flagSetId": "shop", "team": "x"}
    assert again == exported


def test_plan__other_metadata__one_update_command_with_the_new_map() -> None:
    current = _flag({"team": "x"})

    [step] = plan_import([_flag({"team": "y"})], {"f": (current, 3)}, ENV)

    assert step.action is ImportAction.UPDATE
    (update,) = step.commands
    assert isinstance(update, UpdateFlagMetadata)
    assert (update.metadata, update.variations, update.expected_version) == ({"team": "y"}, None, 3)


def test_plan__file_without_metadata__keeps_the_flags_metadata() -> None:
    current = _flag({"team": "x"})

    [step] = plan_import([_flag()], {"f": (current, 3)}, ENV)

    assert (step.action, step.commands) == (ImportAction.UNCHANGED, ())
