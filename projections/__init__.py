"""Redis read models: key layout, atomic Lua apply, projector, in-memory readers, rebuild.

See docs/read-side.md.
"""

from projections.errors import ApplyRejected, PoisonEvent, ReadModelUnavailable, SwitchRefused
from projections.keys import DEFAULT_NAMESPACE, Keyspace
from projections.pool import ReaderPool
from projections.projector import DEFAULT_GROUP, Projector
from projections.queries import FlagView, ReadModelQueries
from projections.reader import EnvironmentReader
from projections.readmodel import ApplyOutcome, ApplyResult, Checkpoint, RedisReadModel
from projections.rebuild import DEFAULT_SHADOW, RebuildReport, ShadowRebuild

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SHADOW",
    "ApplyOutcome",
    "ApplyRejected",
    "ApplyResult",
    "Checkpoint",
    "EnvironmentReader",
    "FlagView",
    "Keyspace",
    "PoisonEvent",
    "Projector",
    "ReadModelQueries",
    "ReadModelUnavailable",
    "ReaderPool",
    "RebuildReport",
    "RedisReadModel",
    "ShadowRebuild",
    "SwitchRefused",
]
