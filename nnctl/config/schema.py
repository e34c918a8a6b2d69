"""The config schema (pydantic v2): every section and layer/optimizer entry, with Keras names and defaults.

Value types carry their own error text ("expected a positive integer, got 'sixteen'"); nothing is coerced.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from nnctl.errors import show


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

PositiveInt = _value_type("a positive integer", lambda v: _is_int(v) and v > 0,
                          {"type": "integer", "exclusiveMinimum": 0})
NonNegativeInt = _value_type("an integer ≥ 0", lambda v: _is_int(v) and v >= 0, {"type": "integer", "minimum": 0})
Number = _value_type("a number", _is_number, {"type": "number"})
PositiveNumber = _value_type("a positive number", lambda v: _is_number(v) and v > 0,
                             {"type": "number", "exclusiveMinimum": 0})
NonNegativeNumber = _value_type("a number ≥ 0", lambda v: _is_number(v) and v >= 0, {"type": "number", "minimum": 0})
OpenFraction = _value_type("a number between 0 and 1 (exclusive)", lambda v: _is_number(v) and 0 < v < 1,
                           {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})
Rate = _value_type("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1,
                   {"type": "number", "minimum": 0, "exclusiveMaximum": 1})
AtLeastTwo = _value_type("an integer ≥ 2", lambda v: _is_int(v) and v >= 2, {"type": "integer", "minimum": 2})
Bool = _value_type("true or false", lambda v: isinstance(v, bool), {"type": "boolean"})
Text = _value_type("a string", lambda v: isinstance(v, str) and v.strip() != "", {"type": "string", "minLength": 1})
RunName = _value_type("a name of at most 100 letters, digits, '_', '-' and '.'",
                      lambda v: isinstance(v, str) and len(v) <= 100 and bool(_SAFE_NAME.match(v)),
                      {"type": "string", "pattern": _SAFE_NAME.pattern, "maxLength": 100})
Shape = _value_type("a list of positive integers", lambda v: isinstance(v, list) and bool(v) and all(
    _is_int(s) and s > 0 for s in v), {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0},
                                       "minItems": 1})
TargetShape = _value_type("a list of positive integers (one may be -1)", lambda v: isinstance(v, list) and bool(v)
                          and all(_is_int(s) and (s > 0 or s == -1) for s in v) and v.count(-1) <= 1,
                          {"type": "array", "items": {"type": "integer"}, "minItems": 1})
ClassWeights = _value_type("a mapping of class ids (integers ≥ 0) to weights (numbers ≥ 0)", lambda v: isinstance(v, dict)
                           and bool(v) and all(_is_int(k) and k >= 0 and _is_number(w) and w >= 0
                                               for k, w in v.items()),
                           {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                            "propertyNames": {"pattern": "^[0-9]+$"}})
# A family member given by name or as {type: name, ...arguments}; the family's registry checks it later.
NamedSpec = _value_type("a name or a mapping with `type`", lambda v: (isinstance(v, str) and v.strip() != "") or (
    isinstance(v, dict) and isinstance(v.get("type"), str)), {"anyOf": [
        {"type": "string"}, {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}]})


class Section(BaseModel):
    """Every mapping in a config: unknown keys are errors and values are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


# ---- data ----------------------------------------------------------------------------------------
class ValidationConfig(Section):
    """Exactly one of: `holdout` (the first N training rows, the book's IMDB setup), `split` (a shuffled
    fraction) or `kfold` (K models, each validated on one of K contiguous parts: the book's Boston setup)."""

    holdout: Optional[PositiveInt] = None
    split: Optional[OpenFraction] = None
    kfold: Optional[AtLeastTwo] = None
    path: Optional[Text] = Field(None, description="a separate validation file: .npz (x_val/y_val or x/y) or, "
                                                   "for a csv dataset, a .csv with the same columns")

    @model_validator(mode="after")
    def _exactly_one(self):
        chosen = [key for key in ("holdout", "split", "kfold", "path") if getattr(self, key) is not None]
        if len(chosen) != 1:
            raise PydanticCustomError("choice", "give exactly one of `holdout`, `split`, `kfold` or `path`, "
                                                "got {got}",
                                      {"got": " and ".join(chosen) or "neither"})
        return self


class DatasetSpec(Section):
    type: str


class ImdbSpec(DatasetSpec):
    """Keras's imdb.load_data: reviews as word indexes, shifted by `index_from`, shuffled with `seed`."""

    type: Literal["imdb"] = "imdb"
    num_words: Optional[PositiveInt] = None
    skip_top: NonNegativeInt = 0
    maxlen: Optional[PositiveInt] = None
    start_char: NonNegativeInt = 1
    oov_char: NonNegativeInt = 2
    index_from: NonNegativeInt = 3
    seed: NonNegativeInt = 113


class ReutersSpec(ImdbSpec):
    type: Literal["reuters"] = "reuters"
    test_split: OpenFraction = 0.2


class MnistSpec(DatasetSpec):
    type: Literal["mnist"] = "mnist"


class FashionMnistSpec(DatasetSpec):
    type: Literal["fashion_mnist"] = "fashion_mnist"


class BostonHousingSpec(DatasetSpec):
    type: Literal["boston_housing"] = "boston_housing"
    test_split: OpenFraction = 0.2
    seed: NonNegativeInt = 113


class SyntheticSpec(DatasetSpec):
    """Generated data for smoke runs: Gaussian blobs, a noisy regression, or sparse word-index "text"."""

    type: Literal["synthetic"] = "synthetic"
    kind: Literal["classification", "regression", "text"] = "classification"
    samples: PositiveInt = 1000
    features: PositiveInt = 20
    classes: PositiveInt = 2
    width: PositiveInt = 1000
    length: PositiveInt = 50
    noise: NonNegativeNumber = 0.1
    seed: NonNegativeInt = 0
    test_split: OpenFraction = 0.2


class NpzSpec(DatasetSpec):
    """Arrays in a .npz file, by key."""

    type: Literal["npz"] = "npz"
    path: Text
    x: Text = "x_train"
    y: Text = "y_train"
    x_test: Optional[Text] = "x_test"
    y_test: Optional[Text] = "y_test"


class NpySpec(DatasetSpec):
    """One .npy file per array."""

    type: Literal["npy"] = "npy"
    x: Text
    y: Text
    x_test: Optional[Text] = None
    y_test: Optional[Text] = None


class CsvSpec(DatasetSpec):
    """A table with a header row: `target` names the label column, `features` the inputs (default: the rest)."""

    type: Literal["csv"] = "csv"
    path: Text
    target: Text
    features: Optional[list[Text]] = None
    delimiter: Text = ","
    test_path: Optional[Text] = None


DATASET_SPECS = {spec.model_fields["type"].default: spec for spec in (
    ImdbSpec, ReutersSpec, MnistSpec, FashionMnistSpec, BostonHousingSpec, SyntheticSpec, NpzSpec, NpySpec,
    CsvSpec)}


class TransformSpec(Section):
    type: str


class MultiHotSpec(TransformSpec):
    type: Literal["multi_hot"] = "multi_hot"
    width: Optional[PositiveInt] = Field(None, description="columns; defaults to the dataset's num_words")


class PadSequencesSpec(TransformSpec):
    type: Literal["pad_sequences"] = "pad_sequences"
    maxlen: PositiveInt
    padding: Literal["pre", "post"] = "pre"
    truncating: Literal["pre", "post"] = "pre"
    value: NonNegativeInt = 0


class OneHotSpec(TransformSpec):
    type: Literal["one_hot"] = "one_hot"
    classes: Optional[PositiveInt] = None


class StandardizeSpec(TransformSpec):
    type: Literal["standardize"] = "standardize"


class RescaleSpec(TransformSpec):
    type: Literal["rescale"] = "rescale"
    scale: Number
    offset: Number = 0.0


class FlattenTransformSpec(TransformSpec):
    type: Literal["flatten"] = "flatten"


class ReshapeTransformSpec(TransformSpec):
    type: Literal["reshape"] = "reshape"
    shape: Shape


TRANSFORM_SPECS = {spec.model_fields["type"].default: spec for spec in (
    MultiHotSpec, PadSequencesSpec, OneHotSpec, StandardizeSpec, RescaleSpec, FlattenTransformSpec,
    ReshapeTransformSpec)}


# ---- layers --------------------------------------------------------------------------------------
class LayerSpec(Section):
    type: str
    name: Optional[RunName] = None


class InputSpec(LayerSpec):
    type: Literal["input"] = "input"
    shape: Shape


class DenseSpec(LayerSpec):
    type: Literal["dense"] = "dense"
    units: PositiveInt
    activation: Optional[Text] = None
    use_bias: Bool = True
    kernel_initializer: NamedSpec = "glorot_uniform"
    bias_initializer: NamedSpec = "zeros"
    kernel_regularizer: Optional[NamedSpec] = None
    bias_regularizer: Optional[NamedSpec] = None


class ActivationSpec(LayerSpec):
    type: Literal["activation"] = "activation"
    activation: Text


class DropoutSpec(LayerSpec):
    type: Literal["dropout"] = "dropout"
    rate: Rate


class FlattenSpec(LayerSpec):
    type: Literal["flatten"] = "flatten"


class ReshapeSpec(LayerSpec):
    type: Literal["reshape"] = "reshape"
    target_shape: TargetShape


LAYER_SPECS = {spec.model_fields["type"].default: spec
               for spec in (InputSpec, DenseSpec, ActivationSpec, DropoutSpec, FlattenSpec, ReshapeSpec)}


def _tagged(specs: dict) -> Any:
    """A union picked by the (already canonical) `type` key."""
    members = tuple(Annotated[spec, Tag(tag)] for tag, spec in specs.items())
    return Annotated[Union[members], Discriminator(_tag_of)]


def _tag_of(value):
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


class ModelConfig(Section):
    input_shape: Optional[Shape] = Field(None, description="per-sample input shape; read from the data if omitted")
    layers: Annotated[list[_tagged(LAYER_SPECS)], Field(min_length=1)]


class DataConfig(Section):
    """Where the data comes from (`dataset`, or `path` to a .npz), how it is preprocessed and validated."""

    dataset: Optional[_tagged(DATASET_SPECS)] = Field(None, description="a built-in name, or {type: ..., ...}")
    path: Optional[Text] = Field(None, description="shorthand for dataset: {type: npz, path: ...}")
    transforms: list[_tagged(TRANSFORM_SPECS)] = Field(default_factory=list)
    validation: Optional[ValidationConfig] = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.path is None):
            raise PydanticCustomError("choice", "give exactly one of `dataset` or `path`, got {got}",
                                      {"got": "both" if self.dataset is not None else "neither"})
        return self


# ---- optimizers ----------------------------------------------------------------------------------
class OptimizerSpec(Section):
    type: str
    learning_rate: PositiveNumber = 0.001
    weight_decay: Optional[NonNegativeNumber] = None
    clipnorm: Optional[PositiveNumber] = None
    clipvalue: Optional[PositiveNumber] = None
    global_clipnorm: Optional[PositiveNumber] = None


class SGDSpec(OptimizerSpec):
    type: Literal["sgd"] = "sgd"
    learning_rate: PositiveNumber = 0.01
    momentum: Rate = 0.0
    nesterov: Bool = False


class RMSpropSpec(OptimizerSpec):
    type: Literal["rmsprop"] = "rmsprop"
    rho: Rate = 0.9
    momentum: Rate = 0.0
    epsilon: PositiveNumber = 1e-7
    centered: Bool = False


class AdamSpec(OptimizerSpec):
    type: Literal["adam"] = "adam"
    beta_1: Rate = 0.9
    beta_2: Rate = 0.999
    epsilon: PositiveNumber = 1e-7
    amsgrad: Bool = False


class AdamWSpec(AdamSpec):
    type: Literal["adamw"] = "adamw"
    weight_decay: NonNegativeNumber = 0.004


class AdagradSpec(OptimizerSpec):
    type: Literal["adagrad"] = "adagrad"
    initial_accumulator_value: NonNegativeNumber = 0.1
    epsilon: PositiveNumber = 1e-7


OPTIMIZER_SPECS = {spec.model_fields["type"].default: spec
                   for spec in (SGDSpec, RMSpropSpec, AdamSpec, AdamWSpec, AdagradSpec)}


# ---- the whole file ------------------------------------------------------------------------------
class Config(Section):
    """One experiment: data, model, loss, optimizer, metrics and how long to train."""

    name: RunName = Field(description="the run folder's name; defaults to the config file's name")
    seed: NonNegativeInt = Field(description="drives initialization, shuffling, splits and dropout; "
                                             "a random one is drawn and recorded when omitted")
    data: DataConfig
    model: ModelConfig
    loss: NamedSpec = Field(description="e.g. binary_crossentropy, or {type: huber, delta: 1.0}")
    optimizer: _tagged(OPTIMIZER_SPECS) = Field(description="a name, or {type: rmsprop, learning_rate: 0.001}")
    metrics: list[NamedSpec] = Field(default_factory=list)
    epochs: PositiveInt = 1
    batch_size: PositiveInt = 32
    class_weight: Optional[ClassWeights] = Field(None, description="weights of the loss per class id, e.g. "
                                                                   "{0: 1.0, 1: 3.0}; classes not named weigh 1")
    callbacks: list[NamedSpec] = Field(default_factory=list)
    device: Literal["cpu", "cuda", "auto"] = "cpu"


def json_schema() -> dict:
    """The JSON Schema of a config file, for editors' autocompletion."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nnctl config"
    return schema
