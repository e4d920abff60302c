"""The flag model: flags, variations, per-environment configuration, rules, segments.

The JSON shape of :class:`EnvironmentConfig` is part of the public API (see docs/model.md).
Structural validation lives here (types, key patterns, regexes that compile, rollout weights);
cross-reference validation (unknown variation, unknown segment, prerequisite cycles) lives in
:mod:`core.validation`, because it needs the flag, its siblings and the segments together.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)

__all__ = [
    "ENVIRONMENT_PATTERN",
    "FLAG_KEY_PATTERN",
    "AllOf",
    "AnyOf",
    "AutoRollback",
    "Clause",
    "Condition",
    "EnvironmentConfig",
    "Flag",
    "FlagKind",
    "FlagMetadata",
    "FlagdBucketing",
    "NotOf",
    "Operator",
    "Prerequisite",
    "Rule",
    "Schedule",
    "Segment",
    "Serve",
    "Target",
    "Variation",
    "WeightedVariation",
]

FLAG_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,127}$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"

FlagKey = Annotated[str, Field(pattern=FLAG_KEY_PATTERN)]
EnvironmentName = Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)]
VariationKey = Annotated[str, Field(pattern=_ID_PATTERN)]


class _Frozen(BaseModel):
    # serialize_by_alias: a dump always uses the public JSON shape ({"not": ...}, never "not_").
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)


class FlagKind(StrEnum):
    BOOLEAN = "boolean"
    STRING = "string"
    NUMBER = "number"
    JSON = "json"


class Operator(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    BETWEEN = "between"
    BEFORE = "before"
    AFTER = "after"
    BETWEEN_DATES = "between_dates"
    SEMVER_EQ = "semver_eq"
    SEMVER_LT = "semver_lt"
    SEMVER_GT = "semver_gt"
    CONTAINS_ANY = "contains_any"
    CONTAINS_ALL = "contains_all"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    IN_SEGMENT = "in_segment"


# How many values each operator takes: None = one or more, 0 = none, n = exactly n.
_ARITY: dict[Operator, int | None] = {
    Operator.EXISTS: 0,
    Operator.NOT_EXISTS: 0,
    Operator.BETWEEN: 2,
    Operator.BETWEEN_DATES: 2,
    Operator.LT: 1,
    Operator.LTE: 1,
    Operator.GT: 1,
    Operator.GTE: 1,
    Operator.BEFORE: 1,
    Operator.AFTER: 1,
    Operator.SEMVER_EQ: 1,
    Operator.SEMVER_LT: 1,
    Operator.SEMVER_GT: 1,
}


class Variation(_Frozen):
    key: VariationKey
    value: JsonValue
    name: str | None = None
    description: str | None = None


class Clause(_Frozen):
    """One test of one context attribute. ``attribute`` may be a dotted path (``user.address.country``)."""

    attribute: str = Field(min_length=1, max_length=256)
    op: Operator
    values: tuple[JsonValue, ...] = ()
    case_insensitive: bool = False

    @model_validator(mode="after")
    def _check_values(self) -> Clause:
        arity = _ARITY.get(self.op)
        count = len(self.values)
        if arity is None and count == 0:
            raise ValueError(f"operator {self.op.value!r} needs at least one value")
        if arity is not None and count != arity:
            raise ValueError(f"operator {self.op.value!r} takes exactly {arity} value(s), got {count}")
        if self.op is Operator.MATCHES:
            _check_patterns(self.values)
        if self.op in (Operator.LT, Operator.LTE, Operator.GT, Operator.GTE, Operator.BETWEEN):
            _check_numbers(self.values)
        if self.op in (Operator.BEFORE, Operator.AFTER, Operator.BETWEEN_DATES):
            _check_instants(self.values)
        if self.op is Operator.IN_SEGMENT and not all(isinstance(v, str) for v in self.values):
            raise ValueError("in_segment values must be segment keys (strings)")
        return self


def _check_patterns(values: tuple[JsonValue, ...]) -> None:
    import re2  # imported lazily: pure library, but heavy to import at model load

    for value in values:
        if not isinstance(value, str):
            raise ValueError("matches values must be regular expressions (strings)")
        try:
            re2.compile(value)
        except re2.error as e:
            raise ValueError(f"invalid regular expression {value!r}: {e}") from e


def _check_numbers(values: tuple[JsonValue, ...]) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"numeric operators need numbers, got {value!r}")


def _check_instants(values: tuple[JsonValue, ...]) -> None:
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"date operators need ISO-8601 instants, got {value!r}")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"invalid ISO-8601 instant {value!r}") from e
        if parsed.tzinfo is None:
            raise ValueError(f"instant {value!r} needs a UTC offset")


class AllOf(_Frozen):
    all: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(_Frozen):
    any: tuple[Condition, ...] = Field(min_length=1)


class NotOf(_Frozen):
    not_: Condition = Field(alias="not")


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        for tag in ("all", "any", "not"):
            if tag in value:
                return tag
        return "clause"
    if isinstance(value, AllOf):
        return "all"
    if isinstance(value, AnyOf):
        return "any"
    if isinstance(value, NotOf):
        return "not"
    if isinstance(value, Clause):
        return "clause"
    return None


Condition = Annotated[
    Annotated[Clause, Tag("clause")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_condition_tag),
]


class FlagdBucketing(StrEnum):
    """Which flagd ``fractional`` form a rollout came from (its bucketing value is read as flagd reads it).

    ``targeting_key``: no bucketing expression (flag key + ``targetingKey``); ``var``: ``{"var": x}``;
    ``cat``: ``{"cat": [prefix, {"var": x}]}`` (prefix ``$flagd.flagKey`` = no salt, or a text salt).
    """

    TARGETING_KEY = "targeting_key"
    VAR = "var"
    CAT = "cat"


class WeightedVariation(_Frozen):
    variation: VariationKey
    weight: int = Field(ge=0, le=1_000_000)


class Serve(_Frozen):
    """What a rule (or the fallthrough) serves: one variation, or a weighted rollout.

    Rollout weights are relative non-negative integers (flagd's fractional scheme); their total
    must be positive. ``bucket_by`` names the context attribute hashed for bucketing (default
    ``targetingKey``), ``salt`` replaces the flag key as the hash prefix.
    """

    variation: VariationKey | None = None
    rollout: tuple[WeightedVariation, ...] | None = None
    bucket_by: str | None = Field(default=None, min_length=1, max_length=256)
    salt: str | None = Field(default=None, max_length=256)
    # Set by the flagd import: read the bucketing value as flagd's fractional does (see
    # core.evaluation.flagd_bucketing); left out of dumps when unset.
    flagd_bucketing: FlagdBucketing | None = Field(default=None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _one_of(self) -> Serve:
        if (self.variation is None) == (self.rollout is None):
            raise ValueError("serve needs exactly one of 'variation' or 'rollout'")
        if self.rollout is not None:
            if not self.rollout:
                raise ValueError("rollout needs at least one weighted variation")
            if sum(w.weight for w in self.rollout) <= 0:
                raise ValueError("rollout weights must sum to more than 0")
            keys = [w.variation for w in self.rollout]
            if len(set(keys)) != len(keys):
                raise ValueError("rollout names a variation more than once")
        if self.flagd_bucketing is not None:
            self._check_flagd_bucketing(self.flagd_bucketing)
        return self

    def _check_flagd_bucketing(self, form: FlagdBucketing) -> None:
        if self.rollout is None:
            raise ValueError("flagd_bucketing applies to a rollout only")
        if form is FlagdBucketing.TARGETING_KEY and (self.bucket_by, self.salt) != (None, None):
            raise ValueError("flagd_bucketing 'targeting_key' takes neither bucket_by nor salt")
        if form is FlagdBucketing.VAR and (self.bucket_by is None or self.salt != ""):
            raise ValueError("flagd_bucketing 'var' needs bucket_by and an empty salt")
        if form is FlagdBucketing.CAT and self.bucket_by is None:
            raise ValueError("flagd_bucketing 'cat' needs bucket_by")


class Rule(_Frozen):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    when: Condition | None = None
    serve: Serve
    description: str | None = Field(default=None, max_length=1024)


class Target(_Frozen):
    variation: VariationKey
    values: tuple[Annotated[str, Field(min_length=1, max_length=512)], ...] = Field(min_length=1)


class Prerequisite(_Frozen):
    flag: FlagKey
    variation: VariationKey


class Schedule(_Frozen):
    enable_at: AwareDatetime | None = None
    disable_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Schedule:
        if self.enable_at and self.disable_at and self.disable_at <= self.enable_at:
            raise ValueError("disable_at must be after enable_at")
        return self


class AutoRollback(_Frozen):
    """Opt-in for the rollback worker (see workers/rollback)."""

    enabled: bool = False
    confirmation_delay_seconds: float = Field(default=60.0, ge=0, le=86_400)
    cooldown_seconds: float = Field(default=600.0, ge=0, le=7 * 86_400)
    dry_run: bool = False


class EnvironmentConfig(_Frozen):
    enabled: bool = False
    off_variation: VariationKey | None = None
    targets: tuple[Target, ...] = ()
    rules: tuple[Rule, ...] = ()
    default: Serve | None = None
    prerequisites: tuple[Prerequisite, ...] = ()
    schedule: Schedule | None = None
    expires_at: AwareDatetime | None = None
    auto_rollback: AutoRollback = AutoRollback()

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        ids = [r.id for r in rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique, repeated: {', '.join(duplicates)}")
        return rules


MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_LENGTH = 128
MAX_METADATA_TEXT_LENGTH = 1024

MetadataKey = Annotated[str, Field(min_length=1, max_length=MAX_METADATA_KEY_LENGTH)]


def _check_metadata_value(value: Any) -> Any:
    """One clear message (instead of one per member of the union) for what metadata cannot hold."""
    if isinstance(value, str):
        if len(value) > MAX_METADATA_TEXT_LENGTH:
            raise ValueError(f"metadata texts are at most {MAX_METADATA_TEXT_LENGTH} characters")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("metadata numbers must be finite")
    if not isinstance(value, bool | int | float):
        raise ValueError("metadata values are strings, numbers or booleans (no objects, arrays or null)")
    return value


MetadataValue = Annotated[
    # max_length repeats the check for the JSON schema (OpenAPI); the before-validator speaks first.
    Annotated[StrictStr, Field(max_length=MAX_METADATA_TEXT_LENGTH)] | StrictBool | StrictInt | StrictFloat,
    BeforeValidator(_check_metadata_value),
]
FlagMetadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_ENTRIES)]
"""A flag's free-form metadata, as OFREP and flagd carry it: string keys; strings, numbers and booleans
only (no objects, arrays or null); at most 32 entries, keys up to 128 and texts up to 1,024 characters."""


_DEFAULT_BOOLEAN_VARIATIONS = (Variation(key="on", value=True), Variation(key="off", value=False))


class Flag(_Frozen):
    key: FlagKey
    name: str = Field(default="", max_length=256)
    description: str = Field(default="", max_length=4096)
    kind: FlagKind = FlagKind.BOOLEAN
    variations: tuple[Variation, ...] = ()
    tags: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    owner: str | None = Field(default=None, max_length=256)
    temporary: bool = False
    archived: bool = False
    # Left out of a dump while empty, so a flag without metadata keeps its JSON (and event hashes).
    metadata: FlagMetadata = Field(default_factory=dict, exclude_if=lambda value: not value)
    environments: dict[EnvironmentName, EnvironmentConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_boolean_variations(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("variations"):
            kind = data.get("kind", FlagKind.BOOLEAN)
            if kind in (FlagKind.BOOLEAN, FlagKind.BOOLEAN.value):
                data = {**data, "variations": _DEFAULT_BOOLEAN_VARIATIONS}
        return data

    @model_validator(mode="after")
    def _check_variations(self) -> Flag:
        if not self.variations:
            raise ValueError(f"a {self.kind.value} flag needs at least one variation")
        keys = [v.key for v in self.variations]
        if len(set(keys)) != len(keys):
            raise ValueError("variation keys must be unique")
        for variation in self.variations:
            if not _value_fits(self.kind, variation.value):
                raise ValueError(
                    f"variation {variation.key!r} has a value that is not of kind {self.kind.value}"
                )
        return self

    def variation(self, key: str) -> Variation | None:
        for variation in self.variations:
            if variation.key == key:
                return variation
        return None


def _value_fits(kind: FlagKind, value: JsonValue) -> bool:
    match kind:
        case FlagKind.BOOLEAN:
            return isinstance(value, bool)
        case FlagKind.STRING:
            return isinstance(value, str)
        case FlagKind.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case FlagKind.JSON:
            return True


class Segment(_Frozen):
    """A named, reusable condition. ``included``/``excluded`` list context keys matched first."""

    key: FlagKey
    name: str = Field(default="", max_length=256)
    description: str = Field(default="", max_length=4096)
    when: Condition | None = None
    included: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    archived: bool = False


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()
Rule.model_rebuild()
Segment.model_rebuild()
