"""The config schema (pydantic v2): every section and layer/optimizer entry, with Keras names and defaults.

Value types (nnctl/config/values.py) carry their own error text and bounds; nothing is coerced.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal, Optional, Union, get_type_hints

from pydantic import ConfigDict, Discriminator, Field, Tag, create_model, model_validator
from pydantic_core import PydanticCustomError

from nnctl.config.schema_data import (DATASET_SPECS, TRANSFORM_SPECS, DataConfig, DatasetSpec,  # noqa: F401
                                      TransformSpec, ValidationConfig)
from nnctl.config.section import Section, _tagged  # noqa: F401 (the schema's names, in one place)
from nnctl.config.values import (BatchSize, Bool, ClassWeights, Epochs, NamedSpec, NonNegativeNumber, PositiveNumber,
                                 Rate, RunName, Seed, Shape, Text)



# ---- layers --------------------------------------------------------------------------------------
class LayerSpec(Section):
    """What every layer entry takes; each layer's own keys come from its class (`layer_spec`)."""

    type: str
    name: Optional[RunName] = None
    trainable: Bool = True
    # The layers (or the model input) this layer reads, by name: a graph (the functional API). Without it, a
    # layer reads the layer above it.
    inputs: Optional[Union[RunName, Annotated[list[RunName], Field(min_length=1, max_length=100)]]] = None


_BASE_ARGUMENTS = ("self", "name", "trainable")


def layer_spec(type_name: str, cls: type) -> type[LayerSpec]:
    """The config schema of one layer class, read from its annotated `__init__`: each argument becomes a key
    with the annotation as its type and the default as its default (a default of None makes it optional), so
    a new layer needs no spec class of its own."""
    hints = get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {"type": (Literal[type_name], type_name)}
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.name in _BASE_ARGUMENTS or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        annotation = hints.get(parameter.name, Any)
        if parameter.default is parameter.empty:
            fields[parameter.name] = (annotation, ...)
        elif parameter.default is None:
            fields[parameter.name] = (Optional[annotation], None)
        else:
            default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            fields[parameter.name] = (annotation, default)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    return create_model(f"{cls.__name__}Spec", __base__=LayerSpec, __doc__=doc or None, **fields)


def _layer_specs() -> dict[str, type[LayerSpec]]:
    from nnctl.nn.layers import LAYERS

    return {name: layer_spec(name, cls) for name, cls in LAYERS.entries.items()}


LAYER_SPECS = _layer_specs()


class PluginLayerSpec(LayerSpec):
    """A layer from a plugin (nnctl/plugins.py): its keys are checked against its class's `__init__`, as a
    built-in layer's are."""

    model_config = ConfigDict(extra="allow", strict=True, validate_default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _by_class(cls, value, handler):
        from nnctl.plugins import LAYER_TYPES

        if not isinstance(value, dict) or not isinstance(value.get("type"), str) or value["type"] not in LAYER_TYPES:
            return handler(value)
        checked = layer_spec(value["type"], LAYER_TYPES[value["type"]]).model_validate(value)
        return cls.model_construct(**checked.model_dump())


class ApplySpec(Section):
    """A layer above applied again (shared weights): `{apply: encoder, inputs: body}`; `name` names this use's
    output for later `inputs`."""

    type: Literal["apply"] = "apply"
    apply: RunName
    name: Optional[RunName] = None
    inputs: Optional[Union[RunName, Annotated[list[RunName], Field(min_length=1, max_length=100)]]] = None


class ModelLayerSpec(LayerSpec):
    """Another config's model used as one layer (Keras: a model is a layer): `config` builds it, `weights` (a
    run folder or its weights file) starts it from a trained run — transfer learning; `trainable: false`
    freezes it."""

    type: Literal["model"] = "model"
    config: Optional[Text] = Field(None, description="the config file whose model this layer is")
    weights: Optional[Text] = Field(None, description="a run (folder or weights file) whose trained weights it "
                                                      "starts from; without `config`, that run's model")

    @model_validator(mode="after")
    def _a_source(self):
        if self.config is None and self.weights is None:
            raise PydanticCustomError("choice", "give `config` (a config file), `weights` (a trained run), or both")
        return self


class InputSpec(Section):
    """One named model input (Keras's `Input(shape=…, name=…)`)."""

    shape: Shape


class ModelConfig(Section):
    input_shape: Optional[Shape] = Field(None, description="per-sample input shape; read from the data if omitted")
    inputs: Optional[Annotated[dict[RunName, InputSpec], Field(min_length=1, max_length=100)]] = Field(
        None, description="named model inputs, e.g. {title: {shape: [10000]}, tags: {shape: [100]}}; layers read "
                          "them by name in `inputs`")
    layers: Annotated[list[_tagged({**LAYER_SPECS, "apply": ApplySpec, "model": ModelLayerSpec,
                                    "plugin": PluginLayerSpec})],
                      Field(min_length=1, max_length=1000)]
    outputs: Optional[Annotated[list[RunName], Field(min_length=1, max_length=100)]] = Field(
        None, description="the layers whose outputs are the model's (a graph); default: the last layer")

    @model_validator(mode="after")
    def _one_input_form(self):
        if self.inputs is not None and self.input_shape is not None:
            raise PydanticCustomError("choice", "give `inputs` (named inputs) or `input_shape`, not both")
        if self.inputs is not None and self.layers and self.layers[0].type == "input":
            raise PydanticCustomError("choice", "with `model.inputs`, no `input` layer: name the inputs there")
        return self


def _by_output(single):
    """`single`, or a mapping from output names to it (a model with several outputs); a mapping with `type`
    is a single spec."""
    return Annotated[Union[Annotated[single, Tag("one")], Annotated[dict[RunName, single], Tag("by_output")]],
                     Discriminator(lambda v: "by_output" if isinstance(v, dict) and "type" not in v else "one")]


_METRIC_LIST = Annotated[Union[Annotated[list[NamedSpec], Tag("list")], Annotated[NamedSpec, Tag("one")]],
                         Discriminator(lambda v: "list" if isinstance(v, list) else "one")]


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
    seed: Seed = Field(description="drives initialization, shuffling, splits and dropout; "
                                             "a random one is drawn and recorded when omitted")
    data: DataConfig
    model: ModelConfig
    loss: _by_output(NamedSpec) = Field(description="e.g. binary_crossentropy, or {type: huber, delta: 1.0}; "
                                                    "several outputs: {priority: mse, department: ...}")
    loss_weights: Optional[dict[RunName, NonNegativeNumber]] = Field(
        None, description="several outputs: each output loss's weight in the total (default 1.0)")
    optimizer: _tagged(OPTIMIZER_SPECS) = Field(description="a name, or {type: rmsprop, learning_rate: 0.001}")
    metrics: Annotated[Union[Annotated[list[NamedSpec], Tag("list")],
                             Annotated[dict[RunName, _METRIC_LIST], Tag("by_output")]],
                       Discriminator(lambda v: "by_output" if isinstance(v, dict) else "list")] = Field(
        default_factory=list, description="e.g. [accuracy]; several outputs: {department: [accuracy], ...}")
    epochs: Epochs = 1
    batch_size: BatchSize = 32
    class_weight: Optional[ClassWeights] = Field(None, description="weights of the loss per class id, e.g. "
                                                                   "{0: 1.0, 1: 3.0}; classes not named weigh 1")
    callbacks: list[NamedSpec] = Field(default_factory=list)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    plugins: Annotated[list[Text], Field(max_length=100)] = Field(
        default_factory=list, description="Python files of custom layers, losses and metrics, relative to the "
                                          "config (types `<file stem>.<Class>`)")


def json_schema() -> dict:
    """The JSON Schema of a config file, for editors' autocompletion."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nnctl config"
    return schema
