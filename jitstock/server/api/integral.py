"""JSON Schema's ``integer`` includes integral floats (``10.0``): the request models
are strict (``false`` is not 0), so such a float is turned into its int before the
strict field sees it, where the field takes an integer and no float."""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from jitstock.protocol.contract import MAX_EXACT_FLOAT_INT


def _leaf_types(annotation: Any) -> set[Any]:
    """The types a field's annotation admits at its top level (through Annotated and
    unions; a list or a dict is one leaf)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return {t for a in get_args(annotation) for t in _leaf_types(a)}
    return {annotation}


@cache
def _int_field(model: type[BaseModel], name: str) -> bool:
    """Whether ``model``'s field ``name`` takes an integer and no float."""
    field = model.model_fields.get(name)
    if field is None:
        return False
    leaves = _leaf_types(field.annotation)
    return int in leaves and float not in leaves


def integral_float(model: type[BaseModel], name: str | None, value: Any) -> Any:
    """An integral float (``10.0``) as the int it stands for when the field takes an
    integer: JSON Schema's ``integer`` includes it. Only up to 2**53, where a double
    still holds every integer exactly (as on the MQTT wire); anything else is left to
    the strict field to refuse (``10.5``, ``"10"``, ``true``, NaN, ``1e300``)."""
    if (
        isinstance(value, float)
        and name is not None
        and value.is_integer()
        and abs(value) <= MAX_EXACT_FLOAT_INT
        and _int_field(model, name)
    ):
        return int(value)
    return value
