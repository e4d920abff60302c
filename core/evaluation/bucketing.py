"""Weighted rollouts: flagd's ``fractional`` v2 bucketing, bit for bit.

The bucketing string is ``prefix + value``: ``prefix`` is the serve's ``salt`` when it has one,
otherwise the flag key; ``value`` is the context's ``targetingKey`` or the attribute named by
``bucket_by``. Its UTF-8 bytes are hashed with MurmurHash3 x86_32, seed 0, read as an unsigned
32-bit integer ``h``. With ``total`` the sum of the rollout's weights, the bucket is
``(h * total) >> 32`` (an integer in ``[0, total)``), and the variation is the first one whose
cumulative weight exceeds the bucket. See docs/evaluation.md.

At compile time the cumulative weights are turned into thresholds in hash space,
``ceil(cumulative * 2**32 / total)``, so the hot path is one hash and one comparison per
variation: ``h < threshold_i  <=>  (h * total) >> 32 < cumulative_i`` for every 32-bit ``h``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import mmh3

__all__ = ["bucket_of", "hash_of", "pick_index", "thresholds_of"]

_hash = mmh3.hash


def hash_of(text: str) -> int:
    """MurmurHash3 x86_32 with seed 0 of ``text``'s UTF-8 bytes, as an unsigned 32-bit integer."""
    return int(_hash(text, 0, False))


def bucket_of(text: str, total_weight: int) -> int:
    """The bucket in ``[0, total_weight)`` that flagd's ``fractional`` v2 gives ``text``."""
    return (hash_of(text) * total_weight) >> 32


def thresholds_of(weights: Sequence[int]) -> tuple[int, ...]:
    """Hash-space upper bounds (exclusive) of each weighted slot, in order."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("rollout weights must sum to more than 0")
    bounds: list[int] = []
    cumulative = 0
    for weight in weights:
        cumulative += weight
        bounds.append(-((-cumulative << 32) // total))  # ceil(cumulative * 2**32 / total)
    return tuple(bounds)


def pick_index(text: str, thresholds: Sequence[int]) -> int:
    """The index of the slot ``text`` falls in (same answer as walking the weights with the bucket)."""
    return bisect_right(thresholds, hash_of(text))
