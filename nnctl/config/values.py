"""The config's value types: each is one check with its own error text ("expected a positive integer, got
'sixteen'"), nothing is coerced, and every size has an upper bound so no config can ask for terabytes.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from nnctl.errors import show

MAX_COUNT = 2**31 - 1  # rows, indexes, ids: what an int32 index holds
MAX_WIDTH = 2**24  # units, classes of a vocabulary, one dimension of a shape
MAX_SAMPLE_VALUES = 2**31 - 1  # values in one sample (the product of its shape)
MAX_SEED = 2**32 - 1  # what numpy's RandomState accepts (Keras datasets shuffle with it)


def _value_type(expected: str, accept, json_schema: dict):
    """An annotated type whose only check is `accept(value)`; the error says what was expected."""
    def validate(value):
        if not accept(value):
            raise PydanticCustomError("expected", "expected {expected}, got {got}",
                                      {"expected": expected, "got": _show(value)})
        return float(value) if json_schema.get("type") == "number" else value
    return Annotated[Any, PlainValidator(validate), WithJsonSchema(json_schema)]


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML spells it, not Python's True
    return "nothing" if value is None else show(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

def bounded_int(low: int, high: int):
    """An integer in [low, high]: "expected a positive integer" for a wrong type or below `low`, and the
    allowed range for one above `high`."""
    expected = "a positive integer" if low == 1 else f"an integer ≥ {low}"

    def validate(value):
        if not (_is_int(value) and value >= low):
            raise PydanticCustomError("expected", "expected {expected}, got {got}",
                                      {"expected": expected, "got": _show(value)})
        if value > high:
            raise PydanticCustomError("too_large", "{got} is too large (allowed: {low} to {high})",
                                      {"got": _show(value), "low": f"{low:,}", "high": f"{high:,}"})
        return value
    bound = {"exclusiveMinimum": 0} if low == 1 else {"minimum": low}
    return Annotated[Any, PlainValidator(validate), WithJsonSchema({"type": "integer", **bound, "maximum": high})]


PositiveInt = bounded_int(1, MAX_COUNT)
NonNegativeInt = bounded_int(0, MAX_COUNT)
Width = bounded_int(1, MAX_WIDTH)
Seed = bounded_int(0, MAX_SEED)
Epochs = bounded_int(1, 1_000_000)
BatchSize = bounded_int(1, 2**20)
Number = _value_type("a number", _is_number, {"type": "number"})
PositiveNumber = _value_type("a positive number", lambda v: _is_number(v) and v > 0,
                             {"type": "number", "exclusiveMinimum": 0})
NonNegativeNumber = _value_type("a number ≥ 0", lambda v: _is_number(v) and v >= 0, {"type": "number", "minimum": 0})
OpenFraction = _value_type("a number between 0 and 1 (exclusive)", lambda v: _is_number(v) and 0 < v < 1,
                           {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
Rate = _value_type("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1,
                   {"type": "number", "minimum": 0, "exclusiveMaximum": 1})
Folds = bounded_int(2, 1000)
Bool = _value_type("true or false", lambda v: isinstance(v, bool), {"type": "boolean"})
Text = _value_type("a string", lambda v: isinstance(v, str) and v.strip() != "", {"type": "string", "minLength": 1})
Delimiter = _value_type("one character other than a newline or a quote, e.g. ',' or a tab ('\\t')",
                        lambda v: isinstance(v, str) and len(v) == 1 and v not in "\r\n\"",
                        {"type": "string", "minLength": 1, "maxLength": 1})
Column = _value_type("a column name or a 0-based column index", lambda v: (isinstance(v, str) and v.strip() != "")
                     or (_is_int(v) and 0 <= v <= MAX_WIDTH),
                     {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]})
RunName = _value_type("a name of at most 100 letters, digits, '_', '-' and '.'",
                      lambda v: isinstance(v, str) and len(v) <= 100 and bool(_SAFE_NAME.match(v)),
                      {"type": "string", "pattern": _SAFE_NAME.pattern, "maxLength": 100})
def _sample_size_ok(dims) -> bool:
    return len(dims) <= 16 and math.prod(d for d in dims if d != -1) <= MAX_SAMPLE_VALUES


_SHAPE_LIMITS = f"each at most {MAX_WIDTH:,}, at most {MAX_SAMPLE_VALUES:,} values in all"
Shape = _value_type(f"a list of positive integers ({_SHAPE_LIMITS})", lambda v: isinstance(v, list) and bool(v)
                    and all(_is_int(s) and 0 < s <= MAX_WIDTH for s in v) and _sample_size_ok(v),
                    {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0, "maximum": MAX_WIDTH},
                     "minItems": 1, "maxItems": 16})
TargetShape = _value_type(f"a list of positive integers, one may be -1 ({_SHAPE_LIMITS})",
                          lambda v: isinstance(v, list) and bool(v) and all(
                              _is_int(s) and (0 < s <= MAX_WIDTH or s == -1) for s in v) and v.count(-1) <= 1
                          and _sample_size_ok(v),
                          {"type": "array", "items": {"type": "integer", "maximum": MAX_WIDTH}, "minItems": 1,
                           "maxItems": 16})
ClassWeights = _value_type("a mapping of class ids (integers ≥ 0) to weights (numbers ≥ 0)", lambda v: isinstance(v, dict)
                           and bool(v) and all(_is_int(k) and 0 <= k <= MAX_COUNT and _is_number(w) and w >= 0
                                               for k, w in v.items()),
                           {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                            "propertyNames": {"pattern": "^[0-9]+$"}})
# A family member given by name or as {type: name, ...arguments}; the family's registry checks it later.
NamedSpec = _value_type("a name or a mapping with `type`", lambda v: (isinstance(v, str) and v.strip() != "") or (
    isinstance(v, dict) and isinstance(v.get("type"), str)), {"anyOf": [
        {"type": "string"}, {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}]})


