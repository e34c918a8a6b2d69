"""Argument types and checks shared by the layer families.

The types annotate `__init__` signatures (the config schema is derived from them); the `check_*` functions
validate the same arguments for the Python API, with errors naming the argument as Keras does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from nnctl.config.values import (Bool, NamedSpec, Number, PositiveNumber, Rate, Shape, TargetShape, Text,
                                  Width, MAX_WIDTH)
from nnctl.errors import ArgumentError, show
from nnctl.nn.initializers import INITIALIZERS
from nnctl.nn.regularizers import REGULARIZERS


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_WIDTH


def _sizes_type():
    def validate(value):
        if _is_size(value) or (isinstance(value, list) and 0 < len(value) <= 3 and all(map(_is_size, value))):
            return value
        raise PydanticCustomError("expected", "expected a positive integer or a list of them, got {got}",
                                  {"got": show(value)})
    return Annotated[Any, PlainValidator(validate), WithJsonSchema({"anyOf": [
        {"type": "integer", "exclusiveMinimum": 0},
        {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0}, "minItems": 1, "maxItems": 3}]})]


def _axis_type():
    def validate(value):
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and -16 <= v <= 16
        if ok(value) or (isinstance(value, list) and value and all(map(ok, value))):
            return value
        raise PydanticCustomError("expected", "expected an axis (an integer, -1 for the last) or a list of axes, "
                                              "got {got}", {"got": show(value)})
    return Annotated[Any, PlainValidator(validate), WithJsonSchema({"anyOf": [
        {"type": "integer"}, {"type": "array", "items": {"type": "integer"}, "minItems": 1}]})]


def _recurrent_spec_type():
    """Bidirectional's `layer`: a recurrent layer's mapping, checked against that layer's own derived schema
    (so `{type: lstm, unitz: 32}` is refused with the key named)."""
    def validate(value):
        from pydantic import ValidationError

        from nnctl.config.schema import LAYER_SPECS
        from nnctl.nn.layers import LAYERS, RECURRENT_TYPES

        kind = value.get("type") if isinstance(value, dict) else None
        try:
            kind = LAYERS.canonical(kind) if isinstance(kind, str) else None
        except ArgumentError:
            kind = None
        if kind not in RECURRENT_TYPES:
            raise PydanticCustomError("expected", "expected a recurrent layer, a mapping with `type` one of {allowed}"
                                      ", got {got}", {"allowed": ", ".join(RECURRENT_TYPES), "got": show(value)})
        try:
            LAYER_SPECS[kind].model_validate({**value, "type": kind})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise PydanticCustomError("nested", "{kind} `{where}`: {message}",
                                      {"kind": kind, "where": where, "message": first["msg"]}) from None
        return value
    return Annotated[Any, PlainValidator(validate), WithJsonSchema({
        "type": "object", "required": ["type"], "description": "a recurrent layer: {type: lstm | gru | simple_rnn, ...}"})]


Sizes = _sizes_type()  # kernel_size, strides, pool_size, dilation_rate: an int or one int per spatial axis
Axis = _axis_type()
RecurrentSpec = _recurrent_spec_type()
Padding = Literal["valid", "same"]
CausalPadding = Literal["valid", "same", "causal"]

__all__ = ["Axis", "Bool", "RecurrentSpec", "CausalPadding", "NamedSpec", "Number", "Optional", "Padding", "PositiveNumber", "Rate",
           "Shape", "Sizes", "TargetShape", "Text", "Width", "check_bool", "check_choice", "check_initializer",
           "check_regularizer", "check_sizes", "Literal"]


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"`{name}` must be true or false, got {show(value)}.")
    return value


def check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ArgumentError(f"`{name}` must be one of {', '.join(allowed)}, got {show(value)}.")
    return value


def check_sizes(name: str, value, rank: int) -> tuple[int, ...]:
    """An int, or a list of `rank` positive ints, as a tuple of `rank` ints (Keras's `standardize_tuple`)."""
    if _is_size(value):
        return (value,) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank and all(map(_is_size, value)):
        return tuple(value)
    raise ArgumentError(f"`{name}` must be a positive integer or a list of {rank} positive integers, "
                        f"got {show(value)}.")


def check_initializer(name: str, value):
    INITIALIZERS.get(value)  # fails at construction, naming the bad value
    return value


def check_regularizer(name: str, value):
    if value is not None:
        REGULARIZERS.get(value)
    return value
