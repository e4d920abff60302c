"""Flagstream for OpenFeature: evaluate flags in process over the Redis read model.

from openfeature import api
from flagstream_openfeature import FlagstreamProvider

api.set_provider(FlagstreamProvider("redis://localhost:6379/0", "production"))
api.get_client().get_boolean_value("new-checkout", False)
"""

from flagstream_openfeature.follower import SnapshotFollower
from flagstream_openfeature.hooks import EvaluationCounter
from flagstream_openfeature.provider import FlagstreamProvider, ProviderNotReady

__all__ = ["EvaluationCounter", "FlagstreamProvider", "ProviderNotReady", "SnapshotFollower"]
