"""Failure handling shared by every adapter and worker: classify errors once, break circuits,
retry within bounds. See ``docs/failure-handling.md``."""

from events.resilience.breaker import AsyncCircuitBreaker, BreakerState, CircuitOpen, TransitionListener
from events.resilience.classify import Classification, classify, describe_error, is_retriable
from events.resilience.retry import RetryPolicy, call_resilient

__all__ = [
    "AsyncCircuitBreaker",
    "BreakerState",
    "CircuitOpen",
    "Classification",
    "RetryPolicy",
    "TransitionListener",
    "call_resilient",
    "classify",
    "describe_error",
    "is_retriable",
]
