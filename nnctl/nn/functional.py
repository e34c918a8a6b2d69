"""Keras's functional API: `Input`, layers called on symbolic tensors, and `Model(inputs, outputs)`, a directed
acyclic graph of layer calls that compiles, trains, evaluates and predicts as `Sequential` does.

    inputs = Input(shape=(32,))
    x = Dense(64, activation="relu")(inputs)
    y = Dense(64, activation="relu")(x)
    outputs = Dense(1, activation="sigmoid")(Add()([x, y]))   # a residual connection
    model = Model(inputs, outputs, seed=0)

The graph runs its nodes in the order they were created (an input is always created before what reads it),
forward, and in reverse backward; a node read by several others receives the sum of their gradients.
"""

from __future__ import annotations

import copy
import itertools

from nnctl.errors import ArgumentError, NnctlError, ShapeError
from nnctl.nn.layers import Dense, Layer
from nnctl.nn.layers import Input as InputLayer
from nnctl.nn.model import Sequential

_created = itertools.count()  # creation order: a topological order of every graph


class KerasTensor:
    """A symbolic tensor: the per-sample `shape` (no batch axis) of a model input, or of a layer's output given
    the symbolic tensors it was called on."""

    def __init__(self, shape, layer: Layer | None = None, inputs=(), name: str | None = None):
        self.shape = tuple(shape)
        self.layer, self.inputs, self.name = layer, tuple(inputs), name
        self.order = next(_created)

    def __repr__(self):
        source = f"input '{self.name}'" if self.layer is None else f"{type(self.layer).__name__}"
        return f"<KerasTensor shape=(None, {', '.join(map(str, self.shape))}) from {source}>"


def Input(shape, name: str | None = None) -> KerasTensor:  # noqa: N802 (Keras's name)
    """A model input of `shape` per sample (without the batch axis), as `keras.Input`."""
    layer = InputLayer(shape, name=name)
    return KerasTensor(layer.shape, name=name or "input_layer")


def call_layer(layer: Layer, inputs) -> KerasTensor:
    """`layer(inputs)` on symbolic tensors: checks the inputs, infers the output shape (shape errors are raised
    here, at the call, as Keras does) and records the node."""
    multi = getattr(layer, "multi_input", False)
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not all(isinstance(t, KerasTensor) for t in tensors):
        raise ArgumentError(f"{type(layer).__name__} was called on {type(inputs).__name__}: call layers on the "
                            f"outputs of Input(...) or of other layers (a model's data goes to fit/predict)")
    if not multi and len(tensors) != 1 or not multi and isinstance(inputs, (list, tuple)):
        raise ArgumentError(f"{type(layer).__name__} takes one input, got a list of {len(tensors)}")
    if multi and not isinstance(inputs, (list, tuple)):
        raise ArgumentError(f"{type(layer).__name__} merges a list of inputs, got a single tensor")
    shapes = [t.shape for t in tensors]
    if layer._custom():  # its call needs its weights: build a throwaway copy (the model builds the layer)
        probe = copy.copy(layer)
        probe.params = []
        probe.build(shapes if multi else shapes[0])
        output_shape = probe.output_shape
    else:
        output_shape = layer.compute_output_shape(shapes if multi else shapes[0])
    layer._called = True
    return KerasTensor(output_shape, layer, tensors)


class Model(Sequential):
    """A graph of layer calls from one `Input` to one output tensor (Keras's functional `Model`); `compile`,
    `fit`, `evaluate`, `predict`, `summary` and the weights work as in `Sequential`."""

    def __new__(cls, inputs=None, outputs=None, *args, **kwargs):
        several = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in (inputs, outputs))
        return super().__new__(cls._several_class() if several else cls)

    @classmethod
    def _several_class(cls):
        """The class of a model with several inputs or outputs (nn/multi.py), a subclass of `cls`."""
        from nnctl.nn.multi import MultiModel
        return cls if issubclass(cls, MultiModel) else MultiModel

    def __init__(self, inputs, outputs, seed: int | None = None, name: str = "functional", device: str = "cpu",
                 dtype: str = "float32"):
        inputs, outputs = _single("inputs", inputs), _single("outputs", outputs)
        if inputs.layer is not None:
            raise ArgumentError("`inputs` must come from Input(...), not from a layer's output")
        nodes = _nodes_between(inputs, outputs)
        super().__init__(None, input_shape=inputs.shape, seed=seed, name=name, device=device, dtype=dtype)
        self.layers = [node.layer for node in nodes]
        self.graph_input, self.graph_output = inputs, outputs
        # Each layer's input nodes as indices into self.layers (-1: the model input).
        position = {id(node): index for index, node in enumerate(nodes)}
        self.sources = [[position.get(id(t), -1) for t in node.inputs] for node in nodes]
        # A layer called several times (shared weights) runs as itself at its first use and as a copy reading
        # the same weights at the others: first_use[i] is the node whose layer node i's is.
        first: dict[int, int] = {}
        self.first_use = [first.setdefault(id(node.layer), index) for index, node in enumerate(nodes)]

    def add(self, layer) -> None:
        raise NnctlError("a functional Model's layers come from its graph: call layers on tensors instead")

    def _build_layer(self, index, layer, shape):
        """Builds layer `index` on the output shapes of the nodes it reads."""
        shapes = [self._source_shape(j) for j in self.sources[index]]
        multi = getattr(layer, "multi_input", False)
        if self.first_use[index] != index:
            return self._share(index, layer, shapes if multi else shapes[0])
        try:
            layer.build(shapes if multi else shapes[0])
        except ShapeError as err:
            located = ShapeError(f"layer {index} '{layer.name}' ({type(layer).__name__}) cannot take "
                                 f"{self._describe_sources(index)}: {err}")
            located.layer_index = index
            raise located from None
        return layer.output_shape

    def _share(self, index, layer, shape):
        """Node `index`'s copy of a layer already built at an earlier node: its own forward state, the same
        weights (the same Param objects, whose gradients the backward adds up over the uses)."""
        given = [tuple(s) for s in shape] if isinstance(shape, list) else tuple(shape)
        keep = {id(p): p for p in layer.params}
        keep.update({id(self.backend): self.backend, id(self.rng): self.rng})
        use = copy.deepcopy(layer, keep)
        if given != layer.input_shape:  # e.g. a shared embedding on sequences of another length (as Keras)
            self._rebuild_shared(index, layer, use, given)
        use.shared_from = layer
        use.backend, use.rng, use.dtype = self.backend, self.rng, self.dtype
        self.layers[index] = use
        return use.output_shape

    def _rebuild_shared(self, index, layer, use, given):
        """Builds `use` for inputs of shape `given`, then points it at `layer`'s weights: allowed when the weights
        it would build have the same shapes (and are the layer's own attributes)."""
        use.params = []
        try:
            use.build(given)
            fresh = use.params
            direct = all(any(value is p for value in vars(use).values()) for p in fresh)
            if not direct or [p.shape for p in fresh] != [p.shape for p in layer.params]:
                raise ShapeError("its weights were built for other inputs")
        except ShapeError as err:
            located = ShapeError(f"layer {index} '{layer.name}' ({type(layer).__name__}) is shared: it was built for "
                                 f"inputs of shape {layer.input_shape}, this use gives {self._describe_sources(index)}"
                                 f" ({err})")
            located.layer_index = index
            raise located from None
        swap = {id(new): old for new, old in zip(fresh, layer.params)}
        for key, value in list(vars(use).items()):
            if id(value) in swap:
                setattr(use, key, swap[id(value)])
        use.params = list(layer.params)

    def _owners(self) -> list:
        return [layer for index, layer in enumerate(self.layers) if self.first_use[index] == index]

    def _source_shape(self, j):
        """The shape node `j` gives (j < 0: a model input)."""
        return self.input_shape if j < 0 else self.layers[j].output_shape

    def _source_name(self, j):
        return self.graph_input.name if j < 0 else self.layers[j].name

    def _describe_sources(self, index):
        parts = [(f"input '{self._source_name(j)}'" if j < 0 else f"the output of '{self.layers[j].name}'")
                 + f", shape {self._source_shape(j)}" for j in self.sources[index]]
        return " and ".join(parts)

    def _mark_input_grads(self):
        """A layer needs its input gradient when some layer upstream of it has trainable weights."""
        upstream = []
        for index, layer in enumerate(self.layers):
            sources = [j for j in self.sources[index] if j >= 0]
            layer.needs_input_grad = any(upstream[j] for j in sources)
            upstream.append(layer.needs_input_grad or any(p.trainable for p in layer.params))

    def _dense_reads_input(self) -> bool:
        """CSR input only when every reader of the model input is a Dense layer reading nothing else."""
        return all(isinstance(self.layers[i], Dense) and src == [-1] for i, src in enumerate(self.sources)
                   if -1 in src)

    def _forward(self, xb, training, input_mask=None):
        outputs, masks = [], []
        for index, layer in enumerate(self.layers):
            xs = [xb if j < 0 else outputs[j] for j in self.sources[index]]
            ms = [input_mask if j < 0 else masks[j] for j in self.sources[index]]
            multi = getattr(layer, "multi_input", False)
            layer.input_mask = ms if multi else ms[0]
            outputs.append(layer.forward(xs if multi else xs[0], training))
            masks.append(layer.compute_mask(layer.input_mask))
        self.output_mask = masks[-1] if self.steps > 1 else None
        return outputs[-1]

    def _backward_below_head(self, dy):
        """The head's input gradient(s) to the nodes it reads, then every node in reverse, each getting the sum
        of its readers' gradients (added in a fixed order: reader by reader, in graph order). A shared layer's
        weight gradients add up over its uses, in the same reverse order."""
        grads: list = [None] * len(self.layers)
        written = {id(p) for p in self.layers[-1].params} | getattr(self, "written_before", set())
        self._input_grad = None
        self._send(len(self.layers) - 1, dy, grads)
        for index in range(len(self.layers) - 2, -1, -1):
            if grads[index] is None:
                continue
            layer = self.layers[index]
            again = [p for p in layer.params if p.trainable and id(p) in written and not p.row_sparse]
            # A shared embedding's later use adds its rows into the table's gradient itself.
            layer.accumulating = any(p.row_sparse and id(p) in written for p in layer.params)
            earlier = [p.grad.copy() for p in again]
            dx = layer.backward(grads[index])
            for param, grad in zip(again, earlier):
                param.grad += grad
            written.update(id(p) for p in layer.params)
            self._send(index, dx, grads)
        return self._input_grad

    def _send(self, index, dx, grads):
        multi = getattr(self.layers[index], "multi_input", False)
        for j, part in zip(self.sources[index], dx if multi else [dx]):
            if part is None:
                continue
            if j < 0:  # the model input's: for a model used as a layer
                self._input_grad = part if self._input_grad is None else self._input_grad + part
            else:
                grads[j] = part if grads[j] is None else grads[j] + part

    def summary(self) -> dict:
        """`Sequential.summary` with Keras's "Connected to" column for graphs (a shared layer: every use's)."""
        table = super().summary()
        owners = [index for index in range(len(self.layers)) if self.first_use[index] == index]
        for row, owner in zip(table["rows"], owners):
            row["connected_to"] = [self._source_name(j)
                                   for index, sources in enumerate(self.sources) if self.first_use[index] == owner
                                   for j in sources]
        return table


class _Values:
    """An initializer that gives back saved values: a nested model's trained weights survive the outer
    model's initialization (transfer learning)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, rng):
        return self.value


class NestedModel(Layer):
    """A model used as a layer (Keras: a model is a layer): its layers run inside the outer model, its weights
    are the outer model's (named `<model>/<layer>/<weight>`, as Keras 3's paths), trained ones kept as they are;
    `trainable=False` freezes them all."""

    supports_masking = True

    def __init__(self, model, trainable: bool = True):
        super().__init__(name=model.name, trainable=trainable)
        self.model = model
        self.type_name = type(self).__name__.lower()

    def compute_output_shape(self, input_shape):
        inner = self.model
        if inner.input_shape is not None and tuple(input_shape) != tuple(inner.input_shape):
            raise ShapeError(f"model '{inner.name}' takes inputs of shape {tuple(inner.input_shape)}, got "
                             f"{tuple(input_shape)}")
        inner.build(input_shape)  # its weights come from its own seed (or its training) and are kept
        return tuple(inner.output_shape)

    def build(self, input_shape):
        inner = self.model
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = tuple(input_shape)
        self.params = list(inner.store.weights)
        for param in self.params:
            if not isinstance(param.initializer, _Values):
                param.initializer = _Values(param.value.copy())
            if not param.name.startswith(f"{self.name}/"):
                param.name = f"{self.name}/{param.name}"
            param.trainable = param.trainable and self.trainable

    def forward(self, x, training):
        inner = self.model
        for layer in inner.layers:
            layer.backend, layer.rng, layer.dtype = self.backend, self.rng, self.dtype
            if self.needs_input_grad:
                layer.needs_input_grad = True  # the outer model wants the gradient w.r.t. this input
        out = inner._forward(x, training, self.input_mask)
        self.output_mask_inner = inner.output_mask
        return out

    def compute_mask(self, mask):
        return getattr(self, "output_mask_inner", None)

    def backward(self, dy):
        inner = self.model
        # A nested model used at several nodes shares its tables: when an earlier use in this backward wrote
        # them (`accumulating`, set by the outer graph), its Embeddings add their rows instead of starting over.
        written = {id(p) for p in self.params if p.row_sparse} if getattr(self, "accumulating", False) else set()
        inner.written_before = written
        for layer in inner.layers:
            layer.accumulating = any(id(p) in written for p in layer.params)
        try:
            return inner._backward_below_head(inner.layers[-1].backward(dy))
        finally:  # (the inner model may train on its own later)
            inner.written_before = set()
            for layer in inner.layers:
                layer.accumulating = False

    def get_config(self):
        raise NnctlError(f"a model used as a layer ('{self.name}') cannot be saved yet")


def as_layer(model) -> NestedModel:
    """`model` as a layer, of class `Functional` or `Sequential` as Keras's summary names them; `model.trainable
    = False` first freezes it, as in Keras."""
    kind = _FUNCTIONAL if isinstance(model, Model) else _SEQUENTIAL
    return kind(model, trainable=getattr(model, "trainable", True))


_FUNCTIONAL = type("Functional", (NestedModel,), {"__doc__": NestedModel.__doc__})
_SEQUENTIAL = type("Sequential", (NestedModel,), {"__doc__": NestedModel.__doc__})


def call_model(model, inputs) -> KerasTensor:
    """`model(inputs)` on symbolic tensors: the model as one layer of the graph being built."""
    if getattr(model, "_as_layer", None) is None:
        model._as_layer = as_layer(model)
    return call_layer(model._as_layer, inputs)


def _single(what, value) -> KerasTensor:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != 1 or not isinstance(values[0], KerasTensor):
        raise ArgumentError(f"`{what}` takes one symbolic tensor (several inputs or outputs are not supported "
                            f"yet), got {value!r}")
    return values[0]


def _nodes_between(inputs, outputs, check_inputs: bool = True) -> list[KerasTensor]:
    """The layer nodes `outputs` (a tensor or a list) depend on, in creation order; every path must start at
    one of `inputs` (a tensor or a list)."""
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    for output in outputs:
        if any(output is source for source in inputs):
            raise ArgumentError(f"output {output!r} is a model input itself: the model has no layers there "
                                f"(outputs come from layers)")
    seen: dict[int, KerasTensor] = {}
    reached: set[int] = set()
    stack = list(outputs)
    while stack:
        tensor = stack.pop()
        if any(tensor is source for source in inputs):
            reached.add(id(tensor))
            continue
        if id(tensor) in seen:
            continue
        if tensor.layer is None:
            raise ArgumentError(f"the graph reads input '{tensor.name}', which is not among the model's inputs "
                                f"({', '.join(repr(t.name) for t in inputs)})")
        seen[id(tensor)] = tensor
        stack.extend(tensor.inputs)
    if not seen:
        raise ArgumentError("`outputs` is the model's input itself: the model has no layers")
    unused = [t.name for t in inputs if id(t) not in reached and check_inputs]
    if unused:
        raise ArgumentError(f"no output depends on input {', '.join(repr(name) for name in unused)}: remove it "
                            f"from `inputs` or use it")
    return sorted(seen.values(), key=lambda t: t.order)


__all__ = ["Input", "KerasTensor", "Model", "call_layer"]
