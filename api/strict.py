"""Strict JSON types for request bodies whose models (in ``core``) are validated in lax mode.

Pydantic's lax mode turns ``"yes"`` into ``True`` and ``"7"`` into ``7``. :func:`parse_strict`
validates as usual, then once more in strict JSON mode and refuses the body when a scalar only
passed thanks to coercion (a string for a bool or number, a number for a string ...). Other strict
complaints (e.g. a tuple field fed by a before-validator) are not type errors of the caller.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from api.errors import ApiError
from core.validation import path_from_loc

__all__ = ["parse_strict"]

M = TypeVar("M", bound=BaseModel)

_SCALAR_TYPE_ERRORS = frozenset(
    {"bool_type", "int_type", "float_type", "string_type", "int_from_float", "bool_parsing", "int_parsing"}
)


def _refuse(errors: list[dict[str, Any]], prefix: str) -> ApiError:
    details = [{"path": path_from_loc(e["loc"], prefix), "message": str(e["msg"])} for e in errors]
    return ApiError(422, "validation_error", "the request is not valid", details=details)


def parse_strict(model: type[M], data: Any, prefix: str = "") -> M:
    """``model`` from decoded JSON ``data``; a ``422`` naming field paths when invalid or lax-only."""
    try:
        value = model.model_validate(data)
    except ValidationError as e:
        raise _refuse([dict(err) for err in e.errors()], prefix) from e
    try:
        model.model_validate_json(orjson.dumps(data), strict=True)
    except ValidationError as e:
        coerced = [dict(err) for err in e.errors() if err["type"] in _SCALAR_TYPE_ERRORS]
        if coerced:
            raise _refuse(coerced, prefix) from e
    return value
