"""The layer contract: `Param` (a weight and its gradient) and `Layer`, the base every layer family derives from.

A layer's annotated `__init__` is also its config schema (nnctl/config/schema.py derives it), so the
annotations use the config's value types (nnctl/nn/layers/arguments.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from nnctl.errors import ArgumentError
from nnctl.nn.layers.custom import tape_backward, tape_forward, traced_output_shape
from nnctl.nn.initializers import INITIALIZERS
from nnctl.nn.regularizers import REGULARIZERS


@dataclass
class Param:
    """A weight. `value`/`grad` become views into the model's flat buffers once it is built.

    `trainable=False` weights (BatchNormalization's moving statistics, every weight of a frozen layer) get no
    optimizer slot and no update; the layer may still write them itself (moving averages).
    """

    name: str
    shape: tuple[int, ...]
    initializer: object
    regularizer: object = None
    trainable: bool = True
    value: np.ndarray = field(default=None, repr=False)
    grad: np.ndarray = field(default=None, repr=False)
    # A table whose gradient is often non-zero in a few rows only (Embedding): the layer sets `rows` each step
    # to the rows it wrote (None: any row), and the optimizer may update just those (nnctl/nn/optimizers.py).
    row_sparse: bool = False
    rows: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layer:
    """Base of every layer. A subclass overrides:

    - `__init__(self, <annotated hyperparameters>, **kwargs)`: validate and store them (errors name the
      argument), then `super().__init__(**kwargs)` (which takes `name` and `trainable`). The annotations are
      the config schema, so one class and one registry line in `layers/__init__.py` make a new layer;
    - `build(input_shape)`: declare weights with `self.add_weight(...)` (input_shape excludes the batch);
    - `compute_output_shape(input_shape)`; `forward(x, training)`; `backward(dy) -> dx`, filling `p.grad`
      (skip dx when `self.needs_input_grad` is False);
    - `get_config()`: exactly the `__init__` arguments.
    A layer whose input is not the model's float type says so in `input_dtype` (Embedding: int32).

    Example:
        class Scale(Layer):
            def build(self, input_shape):
                super().build(input_shape)
                self.gain = self.add_weight("gain", input_shape[-1:], "ones")
            def forward(self, x, training): self.x = x; return x * self.gain.value
            def backward(self, dy): self.gain.grad[...] = (dy * self.x).reshape(-1, dy.shape[-1]).sum(0); return dy * self.gain.value
    """

    type_name = "layer"
    input_dtype = None  # None: the model's float dtype
    # Keras masks: a (batch, steps) bool array marking a sequence's real steps (False: padding). The model sets
    # `input_mask` before each forward call and asks `compute_mask` for the output's; a layer that supports
    # masking passes it on unchanged, the others drop it (as Keras 3 does).
    supports_masking = False
    # Layers ending in an activation expose it so the loss can fuse with it (sigmoid+BCE, softmax+CCE).
    output_activation: str | None = None

    def __init__(self, name: str | None = None, trainable: bool = True):
        if name is not None and (not isinstance(name, str) or not name):
            raise ArgumentError(f"`name` must be a non-empty string, got {name!r}.")
        if not isinstance(trainable, bool):
            raise ArgumentError(f"`trainable` must be true or false, got {trainable!r}.")
        self.name = name
        self.trainable = trainable
        self.params: list[Param] = []
        self.backend = None
        self.rng: np.random.Generator | None = None
        self.needs_input_grad = True
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype = np.float32  # float64 only for gradient checks
        self.input_mask: np.ndarray | None = None

    def __call__(self, inputs):
        """Keras's functional API: this layer applied to symbolic tensors (nnctl.nn.functional) gives the
        symbolic tensor of its output."""
        from nnctl.nn.functional import call_layer

        return call_layer(self, inputs)

    def add_weight(self, name=None, shape=None, initializer="glorot_uniform", regularizer=None,
                   trainable=True) -> Param:
        """A weight of `shape` (Keras's keywords work too: `add_weight(shape=..., initializer=...)`; an
        unnamed weight is `variable`, `variable_1`, … as in Keras 3)."""
        if shape is None:
            raise ArgumentError(f"add_weight needs a `shape`, e.g. add_weight(shape=(4, 8)), for '{name}'")
        if name is None:
            count = sum(p.name.rsplit("/", 1)[-1].startswith("variable") for p in self.params)
            name = "variable" if count == 0 else f"variable_{count}"
        param = Param(f"{self.name}/{name}", tuple(int(s) for s in shape), INITIALIZERS.get(initializer),
                      None if regularizer is None else REGULARIZERS.get(regularizer),
                      trainable=bool(trainable and self.trainable))
        self.params.append(param)
        return param

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.input_shape = tuple(input_shape)
        # A layer written with `call` and its own `build` knows its output shape once that has added the weights.
        later = self._custom() and type(self).build is not Layer.build
        self.output_shape = None if later else self.compute_output_shape(self.input_shape)

    def __init_subclass__(cls, **kwargs):
        """A layer written the Keras way may build without `super().build(input_shape)`: its `build` is wrapped
        so the input and output shapes are set either way."""
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:  # Keras names a layer after its class: SimpleDense → simple_dense
            cls.type_name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__.lstrip("_")).lower()
        if "build" in cls.__dict__ and cls.call is not Layer.call:
            own = cls.__dict__["build"]

            def build(self, input_shape, _own=own):
                self.output_shape = None
                _own(self, input_shape)
                self.input_shape = tuple(input_shape)
                if self.output_shape is None:
                    self.output_shape = self.compute_output_shape(self.input_shape)

            build.__doc__, cls.build = own.__doc__, build

    def compute_output_shape(self, input_shape):
        return traced_output_shape(self, input_shape) if self._custom() else tuple(input_shape)

    def _custom(self) -> bool:
        """Whether this layer is written with `call` (and gets its backward from the ops tape)."""
        return type(self).call is not Layer.call

    def call(self, inputs):
        """Keras's way to write a layer: `call` on `nnctl.ops` (nnctl/ops.py); the backward comes from the tape.
        Built-in layers override `forward` and `backward` instead."""
        raise NotImplementedError

    def forward(self, x, training: bool):
        if not self._custom():
            raise NotImplementedError
        return tape_forward(self, x, training)

    def compute_mask(self, mask):
        """The mask of this layer's output, given its input's (called after `forward`)."""
        return mask if self.supports_masking else None

    def backward(self, dy):
        if not self._custom():
            raise NotImplementedError
        return tape_backward(self, dy)

    def base_config(self) -> dict:
        """`name`, and `trainable` when it is not the default: the arguments every layer takes."""
        return {"name": self.name, **({} if self.trainable else {"trainable": False})}

    def get_config(self) -> dict:
        return self.base_config()

    def param_count(self) -> int:
        return sum(p.size for p in self.params)

    def trainable_count(self) -> int:
        return sum(p.size for p in self.params if p.trainable)

    def _buffer(self, key, shape, dtype=None):
        """A scratch array reused across steps of the same shape: allocation would dominate small batches."""
        cache = self.__dict__.setdefault("_buffers", {})
        shape = tuple(shape)
        buf = cache.get((key, shape))
        if buf is None:
            buf = cache[(key, shape)] = np.empty(shape, dtype=dtype or self.dtype)
        return buf


def name_layers(layers) -> None:
    """Keras's automatic names: a layer without a name becomes its type, then type_1, type_2, … counted over the
    layers of that type in order, named or not (a layer listed twice, a graph's shared one, counts once; None
    entries are skipped)."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for layer in layers:
        if layer is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.name is None:
            n = counts.get(layer.type_name, 0)
            layer.name = layer.type_name if n == 0 else f"{layer.type_name}_{n}"
        counts[layer.type_name] = counts.get(layer.type_name, 0) + 1
