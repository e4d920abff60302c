"""Imported ``fractional`` rollouts read their bucketing value as flagd does.

Expected answers follow flagd's source, not our evaluator: open-feature/flagd
``core/pkg/evaluator/fractional.go`` (the bucketing value must be a string; a null one falls back to
flag key + ``targetingKey``, which must be a string too; otherwise ``fractional`` returns null) and
``json.go`` (a null targeting result serves ``defaultVariant`` with reason DEFAULT); the ``cat`` of
diegoholiveira/jsonlogic v3 (``strings.go``: operands joined then ``strings.TrimSpace``;
``internal/typing/typing.go``: null is ``""``, numbers ``strconv.FormatFloat(v, 'f', -1, 64)``).
The variant for a bucketing string is computed here independently, the way fractional.go does:
``bucket = (murmur3_32(text) * total) >> 32``, walking the weights in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import mmh3
import pytest
from pydantic import ValidationError

from core.commands import CreateFlag, SetRollout
from core.evaluation import compile_environment
from core.evaluation.flagd_bucketing import cat_text, go_number_text
from core.evaluation.result import ErrorCode, Reason
from core.flagd import export_flagd, import_flagd
from core.model import FlagdBucketing, Serve
from tests.unit.core._streams import FlagStream

ENV = "production"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "split"
SLOTS: list[tuple[str, int]] = [("a", 17), ("b", 29), ("c", 31), ("d", 23)]


def _flagd_variant(text: str) -> str:
    """fractional.go's distributeValue, written out independently of core.evaluation.bucketing."""
    total = sum(weight for _, weight in SLOTS)
    bucket = (mmh3.hash(text, 0, signed=False) * total) >> 32
    end = 0
    for variant, weight in SLOTS:
        end += weight
        if bucket < end:
            return variant
    raise AssertionError("unreachable")


def _document(bucketing: Any | None, *, wrap_in_if: bool = False) -> dict[str, Any]:
    slots = [[variant, weight] for variant, weight in SLOTS]
    fractional: Any = {"fractional": ([bucketing] if bucketing is not None else []) + slots}
    targeting = {"if": [{"==": [{"var": "tier"}, "gold"]}, fractional, None]} if wrap_in_if else fractional
    variants = {"a": "A", "b": "B", "c": "C", "d": "D", "fallback": "F"}
    return {
        "flags": {
            KEY: {
                "state": "ENABLED",
                "variants": variants,
                "defaultVariant": "fallback",
                "targeting": targeting,
            }
        }
    }


def _evaluate(
    document: dict[str, Any], context: dict[str, Any]
) -> tuple[str | None, Reason, ErrorCode | None]:
    snapshot = compile_environment(((f, 1) for f in import_flagd(document, ENV)), ENV, {})
    result = snapshot.evaluate(KEY, context, NOW)
    return result.variation, result.reason, result.error_code


def _split(text: str) -> tuple[str, Reason, None]:
    return _flagd_variant(text), Reason.SPLIT, None


DEFAULT = ("fallback", Reason.DEFAULT, None)

# --- (a) no bucketing expression: flag key + targetingKey, a string only -------------------------


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"targetingKey": "user-1"}, _split(KEY + "user-1")),
        ({"targetingKey": ""}, _split(KEY)),  # "" is a string: hashed as the flag key alone
        ({"targetingKey": 42}, DEFAULT),  # not a string: fractional returns null
        ({"targetingKey": True}, DEFAULT),
        ({"targetingKey": None}, DEFAULT),
        ({}, DEFAULT),
    ],
    ids=["string", "empty", "number", "boolean", "null", "missing"],
)
def test_targeting_key_form__as_flagd(context: dict[str, Any], expected: Any) -> None:
    assert _evaluate(_document(None), context) == expected


def test_targeting_key_form__inside_an_if__null_serves_the_default_variant_too() -> None:
    document = _document(None, wrap_in_if=True)

    assert _evaluate(document, {"tier": "gold", "targetingKey": 7}) == DEFAULT
    assert _evaluate(document, {"tier": "gold", "targetingKey": "u"}) == _split(KEY + "u")


# --- (b) {"var": x}: a string as it is; null falls back to the targeting key; others fail ---------


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"org": "acme"}, _split("acme")),
        ({"org": " acme "}, _split(" acme ")),  # var does not trim
        ({"org": ""}, _split("")),
        ({"org": None, "targetingKey": "u-9"}, _split(KEY + "u-9")),
        ({"targetingKey": "u-9"}, _split(KEY + "u-9")),
        ({"targetingKey": 9}, DEFAULT),
        ({}, DEFAULT),
        ({"org": 42, "targetingKey": "u-9"}, DEFAULT),
        ({"org": 1.5}, DEFAULT),
        ({"org": False}, DEFAULT),
        ({"org": {"id": "x"}}, DEFAULT),
    ],
    ids=[
        "string",
        "spaces",
        "empty",
        "null",
        "missing",
        "missing-key-number",
        "nothing",
        "number",
        "float",
        "boolean",
        "object",
    ],
)
def test_var_form__as_flagd(context: dict[str, Any], expected: Any) -> None:
    assert _evaluate(_document({"var": "org"}), context) == expected


# --- (c) {"cat": [prefix, {"var": x}]}: numbers in Go's text, null as "", the whole text trimmed ---


@pytest.mark.parametrize(
    ("prefix", "context", "text"),
    [
        ({"var": "$flagd.flagKey"}, {"org": "acme"}, KEY + "acme"),
        ({"var": "$flagd.flagKey"}, {}, KEY),
        ({"var": "$flagd.flagKey"}, {"org": None}, KEY),
        ({"var": "$flagd.flagKey"}, {"org": ""}, KEY),
        ({"var": "$flagd.flagKey"}, {"org": 42}, KEY + "42"),
        ({"var": "$flagd.flagKey"}, {"org": 42.0}, KEY + "42"),
        ({"var": "$flagd.flagKey"}, {"org": 1.5}, KEY + "1.5"),
        ({"var": "$flagd.flagKey"}, {"org": 1e21}, KEY + "1000000000000000000000"),
        ({"var": "$flagd.flagKey"}, {"org": 1e-7}, KEY + "0.0000001"),
        ({"var": "$flagd.flagKey"}, {"org": " acme\t\n"}, KEY + " acme"),
        ("  salt ", {"org": "x "}, "salt x"),
        ("\u3000salt", {"org": "x\u00a0"}, "saltx"),
        ("s", {"org": "x\x1f"}, "sx\x1f"),  # U+001F is not space to Go (it is to str.isspace)
        ("", {"org": " 7 "}, "7"),
    ],
    ids=[
        "string",
        "missing",
        "null",
        "empty",
        "int",
        "whole-float",
        "float",
        "big",
        "tiny",
        "trailing-space",
        "salt-spaces",
        "unicode-spaces",
        "unit-separator",
        "empty-prefix",
    ],
)
def test_cat_form__as_flagd(prefix: Any, context: dict[str, Any], text: str) -> None:
    assert _evaluate(_document({"cat": [prefix, {"var": "org"}]}), context) == _split(text)


@pytest.mark.parametrize("value", [True, [1], {"a": 1}], ids=["boolean", "array", "object"])
def test_cat_form__value_cat_cannot_write__parse_error(value: Any) -> None:
    document = _document({"cat": [{"var": "$flagd.flagKey"}, {"var": "org"}]})

    assert _evaluate(document, {"org": value}) == (None, Reason.ERROR, ErrorCode.PARSE_ERROR)


# --- the form survives export and re-import ------------------------------------------------------


@pytest.mark.parametrize(
    ("bucketing", "form"),
    [
        (None, FlagdBucketing.TARGETING_KEY),
        ({"var": "org"}, FlagdBucketing.VAR),
        ({"var": "targetingKey"}, FlagdBucketing.VAR),
        ({"cat": [{"var": "$flagd.flagKey"}, {"var": "org"}]}, FlagdBucketing.CAT),
        ({"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]}, FlagdBucketing.CAT),
        ({"cat": ["salt", {"var": "org"}]}, FlagdBucketing.CAT),
        ({"cat": ["", {"var": "org"}]}, FlagdBucketing.CAT),
    ],
)
def test_round_trip__bucketing_form_and_document_kept(bucketing: Any, form: FlagdBucketing) -> None:
    document = _document(bucketing)

    [flag] = import_flagd(document, ENV)
    exported = export_flagd([flag], ENV)

    default = flag.environments[ENV].default
    assert default is not None and default.flagd_bucketing is form
    assert exported["flags"][KEY]["targeting"] == document["flags"][KEY]["targeting"]
    assert import_flagd(exported, ENV) == [flag]


# --- the helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0"),
        (-0.0, "-0"),
        (3, "3"),
        (3.0, "3"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (2**53 + 1, "9007199254740992"),
        (1.2345678901234566e25, "12345678901234566000000000"),
    ],
)
def test_go_number_text__strconv_format_float_f_minus_1(number: int | float, text: str) -> None:
    assert go_number_text(number) == text


def test_cat_text__strings_null_numbers__and_nothing_else() -> None:
    values: list[Any] = ["x", None, 2, True, [], {}]
    assert [cat_text(v) for v in values] == ["x", "", "2", None, None, None]


# --- the model and the commands ------------------------------------------------------------------

ROLLOUT = [{"variation": "on", "weight": 1}, {"variation": "off", "weight": 1}]


@pytest.mark.parametrize(
    ("serve", "message"),
    [
        ({"variation": "on", "flagd_bucketing": "var"}, "rollout only"),
        ({"rollout": ROLLOUT, "bucket_by": "org", "flagd_bucketing": "targeting_key"}, "neither"),
        ({"rollout": ROLLOUT, "salt": "s", "flagd_bucketing": "targeting_key"}, "neither"),
        ({"rollout": ROLLOUT, "bucket_by": "org", "flagd_bucketing": "var"}, "empty salt"),
        ({"rollout": ROLLOUT, "salt": "", "flagd_bucketing": "var"}, "needs bucket_by"),
        ({"rollout": ROLLOUT, "salt": "s", "flagd_bucketing": "cat"}, "needs bucket_by"),
    ],
)
def test_serve__flagd_bucketing_inconsistent_with_bucket_by_or_salt__refused(
    serve: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Serve.model_validate(serve)


def test_serve__flagd_bucketing_unset__left_out_of_the_dump() -> None:
    assert "flagd_bucketing" not in Serve.model_validate({"rollout": ROLLOUT}).model_dump()


def _imported_stream(bucketing: Any) -> FlagStream:
    [flag] = import_flagd(_document(bucketing), ENV)
    stream = FlagStream(KEY)
    stream.run(CreateFlag(flag_key=KEY, flag=flag))
    return stream


def test_set_rollout__same_bucketing__keeps_flagds_reading() -> None:
    stream = _imported_stream({"var": "org"})
    weights = [{"variation": "a", "weight": 1}, {"variation": "b", "weight": 3}]

    stream.run(SetRollout(flag_key=KEY, environment=ENV, rollout=weights))

    serve = stream.state.flag.environments[ENV].default if stream.state.flag else None
    assert serve is not None and serve.flagd_bucketing is FlagdBucketing.VAR and serve.bucket_by == "org"


def test_set_rollout__other_bucketing__flagstreams_reading() -> None:
    stream = _imported_stream({"var": "org"})
    weights = [{"variation": "a", "weight": 1}, {"variation": "b", "weight": 3}]

    stream.run(SetRollout(flag_key=KEY, environment=ENV, rollout=weights, bucket_by="team"))

    serve = stream.state.flag.environments[ENV].default if stream.state.flag else None
    assert serve is not None and serve.flagd_bucketing is None and serve.bucket_by == "team"


def test_no_off_variation__null_fractional__an_error_not_a_default() -> None:
    [flag] = import_flagd(_document(None), ENV)
    config = flag.environments[ENV].model_copy(update={"off_variation": None})
    flag = flag.model_copy(update={"environments": {ENV: config}})

    result = compile_environment([(flag, 1)], ENV, {}).evaluate(KEY, {}, NOW)

    assert (result.reason, result.error_code) == (Reason.ERROR, ErrorCode.PARSE_ERROR)
