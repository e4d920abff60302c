"""The Redis key layout of the read model (docs/architecture.md), behind one class.

Every key and channel name is built here, so a shadow rebuild can use another namespace
(``Keyspace("fs-shadow")``) and swap its keys onto the live ones.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_NAMESPACE", "Keyspace"]

DEFAULT_NAMESPACE = "fs"


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Names of the keys of one read model (``fs`` is the live one)."""

    namespace: str = DEFAULT_NAMESPACE

    def env_flags(self, environment: str) -> str:
        """Hash flag_key -> JSON ``{"version", "flag"}`` (the flag with only this environment)."""
        return f"{self.namespace}:env:{environment}:flags"

    def env_rev(self, environment: str) -> str:
        """Revision counter of one environment, incremented by every change of its hash."""
        return f"{self.namespace}:env:{environment}:rev"

    def env_channel(self, environment: str) -> str:
        """Pub/sub channel announcing changes: ``{"flag_key", "version", "rev"}``."""
        return f"{self.namespace}:env:{environment}:changes"

    def state(self, stream_key: str) -> str:
        """Full state JSON of one stream (a flag key, or ``segment:<key>``)."""
        return f"{self.namespace}:state:{stream_key}"

    def head(self, stream_key: str) -> str:
        """``"{version}:{hash}"`` of one stream, written with its state: what the apply script
        compares without decoding the state (a missing head: the state is decoded once)."""
        return f"{self.namespace}:head:{stream_key}"

    def head_pattern(self) -> str:
        return f"{self.namespace}:head:*"

    def state_pattern(self) -> str:
        return f"{self.namespace}:state:*"

    def stream_of_state_key(self, key: str) -> str:
        return key.removeprefix(f"{self.namespace}:state:")

    @property
    def segments(self) -> str:
        """Hash segment_key -> JSON ``{"version", "segment"}``."""
        return f"{self.namespace}:segments"

    @property
    def segments_rev(self) -> str:
        return f"{self.namespace}:segments:rev"

    @property
    def segments_channel(self) -> str:
        return f"{self.namespace}:segments:changes"

    @property
    def environments(self) -> str:
        """Set of every environment name that has (or had) a flag hash."""
        return f"{self.namespace}:environments"

    def checkpoint(self, group: str, topic: str, partition: int) -> str:
        """The next offset to read for one partition, written atomically with the projection."""
        return f"{self.namespace}:checkpoint:{group}:{topic}:{partition}"

    def log_epoch(self, group: str, topic: str, partition: int) -> str:
        """The log epoch (the relay's reset counter) the partition's checkpoint belongs to
        (missing: epoch 0). A record of a newer epoch resets the checkpoint (docs/read-side.md)."""
        return f"{self.namespace}:epoch:{group}:{topic}:{partition}"

    def checkpoint_pattern(self, group: str, topic: str) -> str:
        return f"{self.namespace}:checkpoint:{group}:{topic}:*"

    def all_keys_pattern(self) -> str:
        return f"{self.namespace}:*"

    def relocate(self, key: str, target: Keyspace) -> str:
        """The same key in another namespace (``fs-shadow:state:x`` -> ``fs:state:x``)."""
        prefix = f"{self.namespace}:"
        if not key.startswith(prefix):
            raise ValueError(f"key {key!r} is not in namespace {self.namespace!r}")
        return f"{target.namespace}:{key.removeprefix(prefix)}"
