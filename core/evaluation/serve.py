"""What a rule or the default serves: a shared result, or a rollout splitter."""

from __future__ import annotations

from collections.abc import Callable

import mmh3

from core.evaluation.bucketing import thresholds_of
from core.evaluation.result import EvaluationResult
from core.evaluation.values import Context, build_getter, key_text
from core.model import Serve

__all__ = ["TARGETING_KEY", "Splitter", "build_splitter"]

TARGETING_KEY = "targetingKey"

Splitter = Callable[[Context], EvaluationResult]

_hash = mmh3.hash


def build_splitter(
    flag_key: str,
    serve: Serve,
    outcome: Callable[[str], EvaluationResult],
    missing: EvaluationResult,
) -> Splitter:
    """A function from context to the rollout's pre-built result for the context's bucket.

    ``outcome(variation_key)`` gives the shared result of each slot; ``missing`` is served
    when the context has no usable bucketing value.
    """
    rollout = serve.rollout or ()
    attribute = serve.bucket_by or TARGETING_KEY
    prefix = flag_key if serve.salt is None else serve.salt
    bounds = thresholds_of([slot.weight for slot in rollout])
    results = tuple(outcome(slot.variation) for slot in rollout)
    if len(results) == 2 and "." not in attribute:
        return _split_two(prefix, attribute, bounds[0], results[0], results[1], missing)
    read = build_getter(attribute)
    pairs = tuple(zip(bounds, results, strict=True))

    def split_many(context: Context) -> EvaluationResult:
        value = read(context)
        if value.__class__ is not str or not value:
            value = key_text(value)
            if value is None:
                return missing
        point = _hash(prefix + value, 0, False)
        for bound, result in pairs:
            if point < bound:
                return result
        return missing  # pragma: no cover - the last bound is 2**32, above every hash

    return split_many


def _split_two(
    prefix: str,
    attribute: str,
    bound: int,
    first: EvaluationResult,
    second: EvaluationResult,
    missing: EvaluationResult,
) -> Splitter:
    def split_two(context: Context) -> EvaluationResult:
        value = context.get(attribute)
        if value.__class__ is not str or not value:
            value = key_text(value)
            if value is None:
                return missing
        return first if _hash(prefix + value, 0, False) < bound else second

    return split_two
