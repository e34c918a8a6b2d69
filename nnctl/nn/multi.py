"""A functional model with several inputs or several outputs (Keras's multi-input / multi-output `Model`).

    title, tags = Input(shape=(10000,), name="title"), Input(shape=(100,), name="tags")
    features = Dense(64, activation="relu")(Concatenate()([title, tags]))
    priority = Dense(1, activation="sigmoid", name="priority")(features)
    department = Dense(4, activation="softmax", name="department")(features)
    model = Model([title, tags], [priority, department])
    model.compile(loss={"priority": "mse", "department": "categorical_crossentropy"},
                  loss_weights={"priority": 1.0, "department": 0.5},
                  metrics={"priority": ["mae"], "department": ["accuracy"]})
    model.fit({"title": t, "tags": g}, {"priority": p, "department": d}, epochs=3)

Inputs and targets are given by name (a dict) or in order (a list). Each output has its own loss (weighted by
`loss_weights`, default 1) and metrics; the logs use Keras 3's keys: `loss` (the weighted sum plus
regularization), `<output>_loss` (each output's weighted loss) and `<output>_<metric>`. `predict` returns a
list of arrays, one per output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from nnctl.engine import threads
from nnctl.errors import ArgumentError, NnctlError, ShapeError, check_positive_int
from nnctl.named import NamedArrays, named
from nnctl.nn import cudapath
from nnctl.nn.functional import Model, _nodes_between
from nnctl.nn.inputs import Dataset, cast_inputs, masked_weights, step_rows, target_rows
from nnctl.nn.losses import LOSSES
from nnctl.nn.metrics import resolve_metrics
from nnctl.nn.model import Sequential
from nnctl.nn.optimizers import OPTIMIZERS
from nnctl.nn.outputs import Head, per_output


@dataclass
class MultiDataset:
    """Named inputs and, per output, its prepared targets (a `Dataset` whose x is unused)."""

    x: NamedArrays
    parts: list

    def __len__(self):
        return len(self.x)


class MultiModel(Model):
    """`Model(inputs, outputs)` with lists of inputs or outputs; `Model` builds one when given several."""

    def __init__(self, inputs, outputs, seed: int | None = None, name: str = "functional", device: str = "cpu",
                 dtype: str = "float32"):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for tensor in inputs:
            if getattr(tensor, "layer", 0) is not None:
                raise ArgumentError("`inputs` must come from Input(...), not from a layer's output")
        input_names = [t.name for t in inputs]
        if len(set(input_names)) != len(input_names):
            raise ArgumentError(f"the model's inputs need distinct names, got {', '.join(input_names)}: "
                                f"give Input(..., name=...)")
        if len({id(t) for t in outputs}) != len(outputs):
            raise ArgumentError("the same tensor is listed twice in `outputs`")
        nodes = _nodes_between(inputs, outputs)
        Sequential.__init__(self, None, input_shape=inputs[0].shape, seed=seed, name=name, device=device,
                            dtype=dtype)
        self.layers = [node.layer for node in nodes]
        self.graph_inputs, self.graph_outputs = inputs, outputs
        self.graph_input, self.graph_output = inputs[0], outputs[-1]
        position = {id(node): index for index, node in enumerate(nodes)}
        place = {id(t): -1 - k for k, t in enumerate(inputs)}  # input k is source -1 - k
        self.sources = [[position.get(id(t), place.get(id(t))) for t in node.inputs] for node in nodes]
        first: dict[int, int] = {}
        self.first_use = [first.setdefault(id(node.layer), index) for index, node in enumerate(nodes)]
        self.output_nodes = [position[id(t)] for t in outputs]
        self.input_names = input_names
        self.input_shapes = [tuple(t.shape) for t in inputs]

    # ---- graph --------------------------------------------------------------------------------
    def _source_shape(self, j):
        return self.input_shapes[-1 - j] if j < 0 else self.layers[j].output_shape

    def _source_name(self, j):
        return self.input_names[-1 - j] if j < 0 else self.layers[j].name

    def build(self, input_shape=None) -> None:
        if self.built:
            return
        super().build(self.input_shape)
        names = [self.layers[node].name for node in self.output_nodes]
        if len(set(names)) != len(names):
            raise ArgumentError(f"the model's outputs need distinct layer names, got {', '.join(names)}")
        self.heads, start = [], 0
        for name, node in zip(names, self.output_nodes):
            shape = tuple(self.layers[node].output_shape)
            width = int(np.prod(shape))
            self.heads.append(Head(name, node, shape, slice(start, start + width)))
            start += width
        self.output_names = names
        self.output_units = start  # the packed output row: every output's values side by side
        self.read_nodes = {j for sources in self.sources for j in sources if j >= 0}

    def _dense_reads_input(self) -> bool:
        return False  # several inputs: each stays dense

    def _runner(self, batch_size, fast_path, sparse):
        if fast_path is True:
            raise ArgumentError("`fast_path` needs a plain stack of small Dense layers")
        if self.device == "cuda":
            return cudapath.path(self, batch_size, False).train
        self.batch_size = batch_size
        return self._layered_steps

    def head_losses_buffer(self, steps: int) -> np.ndarray:
        """(steps, outputs): each step's weighted loss of each output, for the logs' `<output>_loss`."""
        if self.head_step_losses is None or len(self.head_step_losses) != steps:
            self.head_step_losses = np.zeros((steps, len(self.heads)))
        return self.head_step_losses

    # ---- compile ------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None) -> None:
        if loss is None:
            raise ArgumentError("`loss` is required: one for every output, or a dict by output name")
        self.optimizer = OPTIMIZERS.get(optimizer)
        self._loss_specs, self._metric_specs, self._weight_specs = loss, metrics, loss_weights
        self.loss = None  # per output: see self.heads
        self.compile_config = {"optimizer": optimizer, "loss": loss, "metrics": metrics,
                               "loss_weights": loss_weights}
        self.compiled = True
        self._finish_compile()

    def _finish_compile(self):
        self.build()
        names = self.output_names
        losses = per_output(self._loss_specs, names, "loss", single_applies=True)
        weights = per_output(self._weight_specs, names, "loss_weights", single_applies=False, default=1.0)
        metric_lists = per_output(self._metric_specs, names, "metrics", single_applies=False, default=None)
        self.metrics = []
        for index, head in enumerate(self.heads):
            layer = self.layers[head.node]
            head.loss = LOSSES.get(losses[head.name])
            weight = weights[head.name]
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ArgumentError(f"`loss_weights` for '{head.name}' must be a number ≥ 0, got {weight!r}")
            head.weight = float(weight)
            activation = getattr(layer, "output_activation", None)
            head.code, head.fused = head.loss.plan(activation)
            if head.fused and (head.node in self.read_nodes or not hasattr(layer, "z")):
                if head.loss.from_logits:
                    raise ArgumentError(f"output '{head.name}' is also read by other layers: its loss cannot "
                                        f"take logits (from_logits) there; add a separate output layer")
                head.code, head.fused = head.loss.plan("unfused")
            given = metric_lists[head.name]
            given = [] if given is None else given if isinstance(given, (list, tuple)) else [given]
            head.metrics = resolve_metrics(list(given), head.loss.name, head.units)
            for metric in head.metrics:
                if getattr(metric, "head_index", None) is None:  # named once, even when compiled again
                    metric.name = f"{head.name}_{metric.name}"
                metric.head_index = index
            self.metrics += head.metrics
        self.optimizer.build(self.store.values.size)

    def _ready(self, x=None):
        if not self.compiled:
            raise NnctlError("compile the model before training or evaluating it")
        if self.heads[0].loss is None:
            self._finish_compile()

    # ---- data ---------------------------------------------------------------------------------
    def _inputs(self, x) -> NamedArrays:
        self.build()
        x = named(x, self.input_names, "the inputs")
        arrays = {}
        for k, (name, value) in enumerate(x.items()):
            readers = [self.layers[i] for i, sources in enumerate(self.sources) if -1 - k in sources]
            typed = next((layer for layer in readers if getattr(layer, "input_dtype", None) is not None), None)
            value = cast_inputs(np.asarray(value), typed, self.dtype)
            if tuple(value.shape[1:]) != self.input_shapes[k]:
                raise ShapeError(f"input '{name}' takes shape {self.input_shapes[k]} per sample, the data has "
                                 f"{tuple(value.shape[1:])}")
            arrays[name] = value
        self._ready(x)
        return NamedArrays(arrays)

    def _dataset(self, x, y, sample_weight=None, class_weight=None) -> MultiDataset:
        x = self._inputs(x)
        y = named(y, self.output_names, "the targets")
        if len(y) != len(x):
            raise ShapeError(f"the inputs have {len(x)} samples but the targets have {len(y)}")
        if class_weight:
            raise ArgumentError("`class_weight` is not supported for a model with several outputs (as in Keras): "
                                "use sample_weight")
        weights = named(sample_weight, self.output_names, "sample weights") if sample_weight is not None else None
        parts = []
        for head in self.heads:
            values = np.asarray(y[head.name])
            target, labels = head.loss.prepare_targets(target_rows(values, head.shape), head.units)
            weight = np.ones(len(values), self.dtype)
            if weights is not None:
                weight = np.asarray(weights[head.name], self.dtype).reshape(-1)
                if len(weight) != len(values):
                    raise ShapeError(f"sample_weight for '{head.name}' has {len(weight)} entries for "
                                     f"{len(values)} samples")
            weight = np.ascontiguousarray(np.repeat(weight, head.steps))
            parts.append(Dataset(None, target.astype(self.dtype, copy=False), labels, weight,
                                 target_rows(values, head.shape)))
        return MultiDataset(x, parts)

    def prepare_targets(self, y):
        """Each output's (targets, labels); a ShapeError names the output whose targets do not fit."""
        y = named(y, self.output_names, "the targets")
        return [head.loss.prepare_targets(target_rows(np.asarray(y[head.name]), head.shape), head.units)
                for head in self.heads]

    def fit(self, x, y, *args, **kwargs):
        self.build()
        x = named(x, self.input_names, "the inputs")
        y = named(y, self.output_names, "the targets")
        validation = kwargs.get("validation_data")
        if validation is not None:
            kwargs["validation_data"] = (named(validation[0], self.input_names, "the validation inputs"),
                                         named(validation[1], self.output_names, "the validation targets"),
                                         *validation[2:])
        self.head_step_losses = None
        return super().fit(x, y, *args, **kwargs)

    # ---- training -----------------------------------------------------------------------------
    def _forward_nodes(self, xs: list, training: bool):
        outputs, masks = [], []
        for index, layer in enumerate(self.layers):
            ins = [xs[-1 - j] if j < 0 else outputs[j] for j in self.sources[index]]
            ms = [None if j < 0 else masks[j] for j in self.sources[index]]
            multi = getattr(layer, "multi_input", False)
            layer.input_mask = ms if multi else ms[0]
            outputs.append(layer.forward(ins if multi else ins[0], training))
            masks.append(layer.compute_mask(layer.input_mask))
        return outputs, masks

    def _forward(self, xb, training, input_mask=None):
        outputs, masks = self._forward_nodes(xb.values() if isinstance(xb, NamedArrays) else list(xb), training)
        self.output_masks = [masks[h.node] if h.steps > 1 else None for h in self.heads]
        return [outputs[h.node] for h in self.heads]

    def _gradients(self, data: MultiDataset, rows: np.ndarray):
        outs = self._forward(data.x.take(rows), True)
        m = len(rows)
        packed = np.empty((m, self.output_units), self.dtype)
        grads: list = [None] * len(self.layers)
        fused: dict[int, np.ndarray] = {}
        total, self._head_losses = 0.0, []
        for head, part, out, mask in zip(self.heads, data.parts, outs, self.output_masks):
            packed[:, head.columns] = out.reshape(m, -1)
            pred = self.layers[head.node].z if head.fused else out.reshape(-1, head.units)
            targets = step_rows(head.steps, rows)
            target = part.target if head.loss.sparse else part.target[targets]
            labels = part.labels[targets] if head.loss.sparse else part.labels
            grad = np.empty_like(pred)
            loss = head.loss.compute(self.backend, head.code, pred, target, labels,
                                     masked_weights(part.weight[targets], mask), grad)
            if head.weight != 1.0:
                grad *= self.dtype.type(head.weight)
            self._head_losses.append(head.weight * float(loss))
            total += head.weight * float(loss)
            if head.fused:
                fused[head.node] = grad.reshape(out.shape)
            else:
                grads[head.node] = grad.reshape(out.shape) if grads[head.node] is None else \
                    grads[head.node] + grad.reshape(out.shape)
        self._backward_nodes(grads, fused)
        return total + self.store.regularize(self.backend), packed

    def _backward_nodes(self, grads, fused):
        """Every node in reverse; a fused output's layer gets its loss gradient w.r.t. its pre-activation."""
        written: set[int] = set()
        for index in range(len(self.layers) - 1, -1, -1):
            if grads[index] is None and index not in fused:
                continue
            layer = self.layers[index]
            again = [p for p in layer.params if p.trainable and id(p) in written and not p.row_sparse]
            layer.accumulating = any(p.row_sparse and id(p) in written for p in layer.params)  # (a shared table)
            earlier = [p.grad.copy() for p in again]
            dx = (layer.backward(fused[index], from_preactivation=True) if index in fused
                  else layer.backward(grads[index]))
            for param, grad in zip(again, earlier):
                param.grad += grad
            written.update(id(p) for p in layer.params)
            self._send(index, dx, grads)

    def _layered_steps(self, data, order, first, last, outputs, step_losses):
        n, bs = len(data), self.batch_size
        record = self.head_losses_buffer(len(step_losses))
        for step in range(first, last):
            b0, b1 = step * bs, min(n, (step + 1) * bs)
            step_losses[step], outputs[b0:b1] = self._gradients(data, order[b0:b1])
            record[step] = self._head_losses
            self.optimizer.apply(self.backend, self.store)

    def _loss_logs(self, step_losses, sizes) -> dict:
        logs = super()._loss_logs(step_losses, sizes)
        per = self.head_step_losses[:len(sizes)].T @ sizes / sizes.sum()
        return {**logs, **{f"{head.name}_loss": float(value) for head, value in zip(self.heads, per)}}

    def _update_metrics(self, metrics, data, samples, outputs):
        for metric in metrics:
            head = self.heads[metric.head_index]
            metric.update(data.parts[metric.head_index].y[step_rows(head.steps, samples)],
                          outputs[:, head.columns].reshape(-1, head.units))

    # ---- inference ----------------------------------------------------------------------------
    def _predict_both(self, x, batch_size):
        n = len(x)
        logits = np.zeros((n, self.output_units), self.dtype)
        outputs = np.zeros_like(logits)
        self.predicted_masks = [np.ones((n, h.steps), bool) if h.steps > 1 else None for h in self.heads]
        if self.device == "cuda":
            masks = cudapath.path(self, batch_size, False).predict(x, n, logits, outputs)
            self.predicted_masks = [a if a is not None else b for a, b in zip(masks, self.predicted_masks)]
            return logits, outputs
        for b0 in range(0, n, batch_size):
            rows = np.arange(b0, min(n, b0 + batch_size))
            outs = self._forward(x.take(rows), False)
            for k, (head, out, mask) in enumerate(zip(self.heads, outs, self.output_masks)):
                layer = self.layers[head.node]
                outputs[rows, head.columns] = out.reshape(len(rows), -1)
                logits[rows, head.columns] = (layer.z.reshape(len(rows), -1) if head.fused
                                              else outputs[rows, head.columns])
                if mask is not None:
                    self.predicted_masks[k][rows] = mask.reshape(len(rows), -1)
        return logits, outputs

    def _evaluate_dataset(self, data: MultiDataset, batch_size: int) -> dict:
        logits, outputs = self._predict_both(data.x, batch_size)
        losses = {}
        for head, part, mask in zip(self.heads, data.parts, self.predicted_masks):
            pred = np.ascontiguousarray((logits if head.fused else outputs)[:, head.columns]).reshape(-1, head.units)
            loss = head.loss.compute(self.backend, head.code, pred, part.target, part.labels,
                                     masked_weights(part.weight, mask), np.empty_like(pred))
            losses[f"{head.name}_loss"] = head.weight * float(loss)
        results = {"loss": float(sum(losses.values()) + self.store.penalty()), **losses}
        fresh = [copy.deepcopy(metric) for metric in self.metrics]
        for metric in fresh:
            metric.reset()
        self._update_metrics(fresh, data, np.arange(len(data)), outputs)
        return {**results, **{metric.name: metric.result() for metric in fresh}}

    @threads.blas_policy
    def predict(self, x, batch_size=32) -> list:
        """The outputs (after their activations), one array per output in `outputs` order."""
        x = self._inputs(x)
        _, outputs = self._predict_both(x, check_positive_int("batch_size", batch_size))
        return [outputs[:, head.columns].reshape((len(x),) + head.shape) for head in self.heads]

    def summary(self) -> dict:
        table = super().summary()
        table["inputs"], table["outputs"] = list(self.input_names), list(self.output_names)
        return table
