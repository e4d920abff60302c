"""The Redis key layout of docs/architecture.md, and moving keys between namespaces."""

from __future__ import annotations

import pytest

from projections.keys import Keyspace


def test_keyspace__default__matches_documented_layout() -> None:
    keys = Keyspace()

    assert keys.env_flags("production") == "fs:env:production:flags"
    assert keys.env_rev("production") == "fs:env:production:rev"
    assert keys.env_channel("production") == "fs:env:production:changes"
    assert keys.state("checkout") == "fs:state:checkout"
    assert keys.state("segment:beta") == "fs:state:segment:beta"
    assert (keys.segments, keys.segments_rev, keys.segments_channel) == (
        "fs:segments",
        "fs:segments:rev",
        "fs:segments:changes",
    )
    assert keys.environments == "fs:environments"
    assert keys.checkpoint("g", "flagstream.flag-events", 2) == "fs:checkpoint:g:flagstream.flag-events:2"


def test_relocate__shadow_key__lands_on_live_name() -> None:
    shadow, live = Keyspace("fs-shadow"), Keyspace()

    assert shadow.relocate("fs-shadow:env:prod:flags", live) == "fs:env:prod:flags"
    assert shadow.stream_of_state_key("fs-shadow:state:segment:x") == "segment:x"


def test_relocate__key_of_other_namespace__refused() -> None:
    with pytest.raises(ValueError, match="not in namespace"):
        Keyspace("fs-shadow").relocate("fs:state:a", Keyspace())
