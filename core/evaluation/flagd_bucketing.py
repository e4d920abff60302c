"""Rollouts imported from flagd: the bucketing value read exactly as flagd's ``fractional`` reads it.

Sources (read 2026-12): open-feature/flagd ``core/pkg/evaluator/fractional.go`` and ``json.go``,
diegoholiveira/jsonlogic (v3, the JsonLogic flagd uses) ``strings.go`` (``cat``) and
``internal/typing/typing.go`` (``ToString``):

* no bucketing expression (``targeting_key``): the context's ``targetingKey`` must be a JSON string
  (``""`` included), hashed as flag key + targeting key; anything else (missing, a number) makes
  ``fractional`` return null, and a null targeting result serves the ``defaultVariant`` (reason DEFAULT);
* ``{"var": x}`` (``var``): a string value (``""`` included) is hashed as it is, untrimmed; a missing or
  null value is dropped and the targeting-key form applies; any other value (number, boolean, object)
  makes ``fractional`` fail, so the ``defaultVariant`` is served;
* ``{"cat": [prefix, {"var": x}]}`` (``cat``): ``cat`` writes a missing value as ``""`` and a number in
  Go's shortest fixed notation (``strconv.FormatFloat(v, 'f', -1, 64)``: ``1.0`` is ``1``, ``1e21`` is
  ``1000000000000000000000``), then trims Unicode white space (Go's ``strings.TrimSpace``) from the
  whole text; a boolean, object or array is not text to ``cat`` (a type assertion fails): an error.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import mmh3

from core.evaluation.bucketing import thresholds_of
from core.evaluation.result import EvaluationResult
from core.evaluation.values import Context, build_getter
from core.model import FlagdBucketing, Serve

__all__ = ["GO_SPACE", "build_flagd_splitter", "cat_text", "go_number_text"]

TARGETING_KEY = "targetingKey"

# unicode.IsSpace: Latin-1 spaces and the White_Space property (str.isspace adds \x1c-\x1f, Go does not).
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)

_hash = mmh3.hash


def go_number_text(number: int | float) -> str:
    """A JSON number as Go's JsonLogic writes it: decoded as a float64, shortest fixed notation."""
    text = format(Decimal(repr(float(number))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def cat_text(value: Any) -> str | None:
    """One ``cat`` operand as text; ``None`` when ``cat`` cannot write it (boolean, object, array)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return go_number_text(value)


def build_flagd_splitter(
    flag_key: str,
    serve: Serve,
    outcome: Callable[[str], EvaluationResult],
    fallback: EvaluationResult,
    broken: EvaluationResult,
) -> Callable[[Context], EvaluationResult]:
    """``fallback`` is what flagd serves when ``fractional`` answers null (the default variant);
    ``broken`` what it cannot evaluate at all."""
    rollout = serve.rollout or ()
    pairs = tuple(
        zip(thresholds_of([s.weight for s in rollout]), [outcome(s.variation) for s in rollout], strict=True)
    )
    read = build_getter(serve.bucket_by or TARGETING_KEY)

    def pick(text: str) -> EvaluationResult:
        point = _hash(text, 0, False)
        for bound, result in pairs:
            if point < bound:
                return result
        return broken  # pragma: no cover - the last bound is 2**32, above every hash

    def by_targeting_key(context: Context) -> EvaluationResult:
        key = context.get(TARGETING_KEY)
        return pick(flag_key + key) if isinstance(key, str) else fallback

    if serve.flagd_bucketing is FlagdBucketing.TARGETING_KEY:
        return by_targeting_key
    if serve.flagd_bucketing is FlagdBucketing.VAR:

        def by_var(context: Context) -> EvaluationResult:
            value = read(context)
            if isinstance(value, str):
                return pick(value)
            return by_targeting_key(context) if value is None else fallback

        return by_var
    prefix = flag_key if serve.salt is None else serve.salt

    def by_cat(context: Context) -> EvaluationResult:
        text = cat_text(read(context))
        return broken if text is None else pick((prefix + text).strip(GO_SPACE))

    return by_cat
