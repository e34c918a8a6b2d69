"""`Sequential`: shape inference, compile, fit (with validation and callbacks), evaluate, predict.

One seeded generator per model drives initialization, shuffling and dropout, so a seed fixes every byte.
"""

from __future__ import annotations

import copy
import time
import numpy as np

from nnctl.engine import threads
from nnctl.engine.backend import get_backend
from nnctl.engine.csr import CSRBatch, CSRMatrix
from nnctl.errors import ArgumentError, NnctlError, ShapeError, check_positive_int
from nnctl.nn import cudapath, fastpath
from nnctl.nn.callbacks import CallbackList, History
from nnctl.nn.callbacks.base import FitHistory
from nnctl.nn.callbacks.monitors import find_nonfinite
from nnctl.nn.layers import LAYERS, Dense, Input, Layer, conv_pool
from nnctl.nn.layers.base import name_layers
from nnctl.nn.losses import LOSSES
from nnctl.nn.inputs import Dataset, ModelInputs, masked_weights, split_off, step_rows
from nnctl.nn.metrics import resolve_metrics
from nnctl.nn.optimizers import OPTIMIZERS
from nnctl.nn.store import ParameterStore


class Sequential(ModelInputs):
    """A linear stack of layers, Keras style.

    Example:
        model = Sequential([Dense(16, activation="relu"), Dense(1, activation="sigmoid")],
                           input_shape=(10000,), seed=42)
        model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=4, batch_size=512, validation_data=(x_val, y_val))
    """

    def __init__(self, layers=None, input_shape=None, seed: int | None = None, name: str = "sequential",
                 device: str = "cpu", dtype: str = "float32"):
        self.name = name
        if dtype not in ("float32", "float64"):
            raise ArgumentError(f"`dtype` must be float32 or float64 (float64 is for gradient checks), got {dtype!r}.")
        self.dtype = np.dtype(dtype)
        self.layers: list[Layer] = []
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.device = cudapath.check_device(device)  # "cuda": the host work stays on the CPU backend
        self.backend = get_backend("cpu" if device == "cuda" else device)
        self.built = self.compiled = self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        layer = LAYERS.get(layer) if isinstance(layer, (str, dict)) else layer
        if isinstance(layer, Sequential):  # a model is a layer (Keras), e.g. a trained base under a new head
            from nnctl.nn.functional import as_layer
            layer = as_layer(layer)
        if not isinstance(layer, Layer):
            raise ArgumentError(f"`layers` takes Layer objects or layer specs, got {layer!r}.")
        if self.built:
            raise NnctlError("cannot add layers to a model that is already built")
        if isinstance(layer, Input):
            if self.layers or self.input_shape is not None and self.input_shape != layer.shape:
                raise ShapeError("an Input layer must come first and agree with `input_shape`")
            self.input_shape = layer.shape
            return
        self.layers.append(layer)

    # ---- construction -------------------------------------------------------------------------
    def build(self, input_shape=None) -> None:
        """Names layers (dense, dense_1, ...), infers every shape and allocates/initializes weights."""
        if self.built:
            return
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise ShapeError("the model's input shape is unknown: give `input_shape` or an Input layer")
        if not self.layers:
            raise ShapeError("the model has no layers")
        self.input_shape = shape
        name_layers(self.layers)
        seen: set[int] = set()
        for index, layer in enumerate(self.layers):
            if id(layer) in seen:  # a graph's shared layer, used again (functional.Model builds a copy)
                shape = self._build_layer(index, layer, shape)
                continue
            seen.add(id(layer))
            shape = self._build_layer(index, layer, shape)
            layer.backend, layer.rng, layer.dtype = self.backend, self.rng, self.dtype
        names = [layer.name for layer in self._owners()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ArgumentError(f"layer names must be unique, got {', '.join(duplicates)} more than once")
        self._mark_input_grads()
        self.store = ParameterStore([p for layer in self._owners() for p in layer.params], self.rng, self.dtype)
        self.output_shape = shape
        self.output_units = int(np.prod(shape))
        # An N-d output (..., units): `steps` rows of `units` for the loss and metrics (as Keras averages).
        self.units, self.steps = int(shape[-1]), int(np.prod(shape[:-1]))
        self.built = True

    def _build_layer(self, index, layer, shape):
        """Builds layer `index` on `shape`, the previous layer's output; returns its output shape."""
        try:
            layer.build(shape)
        except ShapeError as err:
            source = (f"layer {index - 1} '{self.layers[index - 1].name}' "
                      f"({type(self.layers[index - 1]).__name__})" if index else "the model input")
            located = ShapeError(f"layer {index} '{layer.name}' ({type(layer).__name__}) cannot take the output "
                                 f"of {source}, shape {shape}: {err}")
            located.layer_index = index
            raise located from None
        return layer.output_shape

    def _owners(self) -> list:
        """The layers that own weights and names: every layer (a graph's shared layer once)."""
        return self.layers

    def _dense_reads_input(self) -> bool:
        """Whether a mostly-zero input may run as CSR: only a first Dense layer reads it."""
        return isinstance(self.layers[0], Dense)

    def _mark_input_grads(self):
        """Layers before the first trainable weight never need an input gradient; in this chain a conv layer
        and the max pooling after it may run fused (nnctl/nn/layers/conv_pool.py; a graph overrides this)."""
        seen_params = False
        for layer in self.layers:
            layer.needs_input_grad = seen_params
            seen_params = seen_params or any(p.trainable for p in layer.params)
        conv_pool.pair(self.layers)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        if loss is None:
            raise ArgumentError("`loss` is required, e.g. 'binary_crossentropy' or 'mse'.")
        self.optimizer, self.loss = OPTIMIZERS.get(optimizer), LOSSES.get(loss)
        self._metric_specs = list(metrics or [])
        self.compile_config = {"optimizer": optimizer, "loss": loss, "metrics": self._metric_specs}  # for save
        self.compiled = True
        if self.input_shape is not None:
            self._finish_compile()

    def _finish_compile(self):
        self.build()
        head = self.layers[-1]
        self.loss_code, self.loss_fused = self.loss.plan(head.output_activation)
        if head.output_activation == "softmax" and self.loss.name == "binary_crossentropy" and self.units == 1:
            raise ArgumentError("a 1-unit softmax output is always 1.0: use `sigmoid` with binary_crossentropy")
        self.metrics = resolve_metrics(self._metric_specs, self.loss.name, self.units)
        self.optimizer.build(self.store.values.size)

    def _ready(self, x=None):
        if not self.compiled:
            raise NnctlError("compile the model before training or evaluating it")
        if not self.built:
            self.input_shape = tuple(x.shape[1:])  # (x is given whenever the model is not built yet)
        if not self.built or not hasattr(self, "metrics"):
            self._finish_compile()

    # ---- inspection ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """Keras's summary as data: rows of (name, type, output shape, params) and the totals."""
        self.build()
        rows = [{"name": layer.name, "type": type(layer).__name__, "output_shape": (None,) + layer.output_shape,
                 "params": layer.param_count()} for layer in self._owners()]
        total, trainable = sum(r["params"] for r in rows), sum(layer.trainable_count() for layer in self._owners())
        return {"rows": rows, "total_params": total, "trainable_params": trainable,
                "non_trainable_params": total - trainable}

    def get_weights(self) -> dict[str, np.ndarray]:
        return {p.name: p.value.copy() for p in self.store.weights}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for p in self.store.weights:
            if p.name not in weights:
                raise ShapeError(f"no weights given for '{p.name}'")
            value = np.asarray(weights[p.name], dtype=np.float32)
            if value.shape != p.shape:
                raise ShapeError(f"'{p.name}' has shape {p.shape}, the weights given have {value.shape}")
            p.value[...] = value

    # ---- training -----------------------------------------------------------------------------
    @threads.blas_policy  # BLAS on one thread, as under `nnctl` (engine/settings.py); the caller's after
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, callbacks=None,
            class_weight=None, sample_weight=None, initial_epoch=0, fast_path="auto",
            validation_split=0.0) -> FitHistory:
        """Trains; returns the Keras-style history (a dict, also with `.history` and `.epoch`) plus
        `epoch_time` (s) and `lr` per epoch. `validation_split`: as Keras, the last fraction of (x, y), taken
        before any shuffling, validates instead of training (ignored when `validation_data` is given)."""
        epochs, batch_size = check_positive_int("epochs", epochs), check_positive_int("batch_size", batch_size)
        if validation_split and validation_data is None:
            x, y, sample_weight, validation_data = split_off(x, y, sample_weight, validation_split)
        data = self._dataset(x, y, sample_weight, class_weight)
        val = self._dataset(*validation_data) if validation_data is not None else None
        runner = self._runner(batch_size, fast_path, isinstance(data.x, CSRMatrix))
        history = History()
        cbs = CallbackList([history, *(callbacks or [])], self)
        n, steps = len(data), -(-len(data) // batch_size)
        outputs = np.zeros((n, self.output_units), self.dtype)
        step_losses = np.zeros(steps, np.float64)
        batch_sizes = np.minimum(batch_size, n - np.arange(steps) * batch_size).astype(np.float64)
        self.stop_training, self.stopped_mid_epoch = False, None
        self.nonfinite = None  # {"epoch", "step", "steps", "loss"} when a TerminateOnNaN callback stopped the run
        self.validation_seconds = 0.0  # time spent validating, for the run's phase split
        self._chunk = 1  # steps per runner call when callbacks want batch hooks; adapts to ~0.1 s
        cbs.set_params({"epochs": epochs, "steps": steps, "samples": n, "batch_size": batch_size,
                        "initial_epoch": initial_epoch})
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            start = time.perf_counter()
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            finished = self._run_epoch(runner, data, order, steps, outputs, step_losses, batch_sizes, cbs, epoch)
            self.optimizer.flush(self.backend, self.store)  # row-sparse updates owe decays: settle them now
            if not finished:
                self.stopped_mid_epoch = epoch
                break
            for metric in self.metrics:
                metric.reset()
            self._update_metrics(self.metrics, data, order, outputs)
            logs = {**self._loss_logs(step_losses, batch_sizes), **{m.name: m.result() for m in self.metrics}}
            if val is not None:
                began = time.perf_counter()
                logs.update({f"val_{k}": v for k, v in self._evaluate_dataset(val, batch_size).items()})
                self.validation_seconds += time.perf_counter() - began
            logs.update(epoch_time=time.perf_counter() - start, lr=self.optimizer.learning_rate)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        return FitHistory(history.history, history.epoch, history.params)

    def _run_epoch(self, runner, data, order, steps, outputs, step_losses, batch_sizes, cbs, epoch) -> bool:
        """Every step of one epoch; False when a batch callback set `stop_training` before the end, or when
        a non-finite loss stopped it (see `_nonfinite`). Without batch callbacks the whole epoch is one runner
        call. With them, steps run in chunks of about 0.1 s, and the running metrics shown to callbacks come
        from throwaway copies, so the epoch's recorded metrics do not depend on how the epoch was chunked.
        """
        if not cbs.wants_batches:
            runner(data, order, 0, steps, outputs, step_losses)
            return not self._nonfinite(cbs, epoch, step_losses, 0, steps)
        shown = [copy.deepcopy(metric) for metric in self.metrics] if cbs.wants_batch_logs else []
        for metric in shown:
            metric.reset()
        n, batch_size, first, chunk = len(data), int(batch_sizes[0]), 0, self._chunk
        while first < steps:
            last = min(steps, first + chunk)
            cbs.on_train_batch_begin(first)
            if self.stop_training:
                return False
            began = time.perf_counter()
            runner(data, order, first, last, outputs, step_losses)
            took = time.perf_counter() - began
            if self._nonfinite(cbs, epoch, step_losses, first, last):
                return False
            chunk = self._chunk = int(min(max(1, chunk * 4), max(1, (last - first) * 0.1 / max(took, 1e-9))))
            logs = None
            if cbs.wants_batch_logs:
                lo, hi = first * batch_size, min(n, last * batch_size)
                self._update_metrics(shown, data, order[lo:hi], outputs[lo:hi])
                logs = {**self._loss_logs(step_losses[:last], batch_sizes[:last]),
                        **{m.name: m.result() for m in shown}}
            cbs.on_train_batch_end(last - 1, logs)
            first = last
            if self.stop_training and first < steps:
                return False
        return True

    def _loss_logs(self, step_losses, sizes) -> dict:
        """The epoch's (or its first steps') mean loss, from each step's loss and batch size."""
        return {"loss": float(step_losses @ sizes / sizes.sum())}

    def _update_metrics(self, metrics, data, samples, outputs) -> None:
        """Adds rows `samples` of the targets and their `outputs` rows (samples, output values) to `metrics`."""
        for metric in metrics:
            metric.update(data.y[step_rows(self.steps, samples)], outputs.reshape(-1, self.units))

    def _nonfinite(self, cbs, epoch, step_losses, first, last) -> bool:
        """With a TerminateOnNaN callback: True (and `nonfinite` set, training stopped) when `find_nonfinite`
        finds a NaN or infinity in steps first..last-1 (checked after each runner call, so the step is exact)."""
        found = find_nonfinite(epoch, step_losses, first, last, self.store) if cbs.stops_on_nonfinite else None
        if found is not None:
            self.nonfinite, self.stop_training = found, True
        return found is not None

    def _runner(self, batch_size, fast_path, sparse):
        if fast_path not in ("auto", True, False):
            raise ArgumentError(f"`fast_path` must be auto, true or false, got {fast_path!r}.")
        if self.device == "cuda":
            return cudapath.path(self, batch_size, sparse).train
        can = fastpath.eligible(self, batch_size, sparse)
        if fast_path is True and not can:
            raise ArgumentError("`fast_path` needs a plain stack of small Dense layers")
        if fast_path is False or not can:
            self.batch_size = batch_size
            return self._layered_steps
        return fastpath.FastPath(self, batch_size, sparse).train

    def _forward(self, xb, training, input_mask=None):
        """The layers in order; each gets its input's Keras mask, and `output_mask` is the last one's."""
        out, mask = xb, input_mask
        for layer in self.layers:
            layer.input_mask = mask
            out = layer.forward(out, training)
            mask = layer.compute_mask(mask)
        self.output_mask = mask if self.steps > 1 else None  # a per-step output: masks its loss
        return out

    def _gradients(self, data: Dataset, rows: np.ndarray):
        """Forward and backward on data[rows]: fills the gradient buffer; returns (loss, outputs (m, units))."""
        head, x = self.layers[-1], data.x
        out = self._forward(CSRBatch(x, rows) if isinstance(x, CSRMatrix) else x[rows], True)
        out2 = out.reshape(len(rows), -1)
        pred = head.z if self.loss_fused else out.reshape(-1, self.units)
        targets = step_rows(self.steps, rows)
        target = data.target if self.loss.sparse else data.target[targets]
        labels = data.labels[targets] if self.loss.sparse else data.labels
        grad = np.empty_like(pred)
        loss = self.loss.compute(self.backend, self.loss_code, pred, target, labels,
                                 masked_weights(data.weight[targets], self.output_mask), grad)
        dy = (head.backward(grad.reshape(out.shape), from_preactivation=True) if self.loss_fused
              else head.backward(grad.reshape(out.shape)))
        self._backward_below_head(dy)
        return loss + self.store.regularize(self.backend), out2

    def _backward_below_head(self, dy):
        """Back-propagates the head's input gradient through the other layers; returns the gradient w.r.t. the
        model's input (None when the first layer computes none)."""
        for layer in reversed(self.layers[:-1]):
            if dy is None:
                break
            dy = layer.backward(dy)
        return dy

    def __call__(self, inputs):
        """A model called on symbolic tensors is a layer of the graph being built (Keras: a model is a layer)."""
        from nnctl.nn.functional import call_model

        return call_model(self, inputs)

    def _layered_steps(self, data, order, first, last, outputs, step_losses):
        """The reference training loop: layer by layer, one Python iteration per step."""
        n, bs = len(data), self.batch_size
        for step in range(first, last):
            b0, b1 = step * bs, min(n, (step + 1) * bs)
            step_losses[step], outputs[b0:b1] = self._gradients(data, order[b0:b1])
            self.optimizer.apply(self.backend, self.store)

    @threads.blas_policy
    def compute_gradients(self, x, y, sample_weight=None) -> tuple[float, dict[str, np.ndarray]]:
        """The training loss on (x, y) as one batch and the gradient of every parameter (no update)."""
        data = self._dataset(x, y, sample_weight)
        loss, _ = self._gradients(data, np.arange(len(data)))
        return float(loss), {p.name: p.grad.copy() for p in self.store.params}

    # ---- inference ----------------------------------------------------------------------------
    def _predict_both(self, x, batch_size):
        """(logits, outputs) of the last layer for every row; `predicted_mask`: a per-step output's mask."""
        n, sparse = x.shape[0], isinstance(x, CSRMatrix)
        logits, outputs = np.zeros((n, self.output_units), self.dtype), np.zeros((n, self.output_units), self.dtype)
        self.predicted_mask = np.ones((n, self.steps), bool) if self.steps > 1 else None  # all real: no mask
        if self.device == "cuda" or fastpath.eligible(self, batch_size, sparse):
            masks = cudapath.fast_path(self, batch_size, sparse).predict(x, n, logits, outputs)  # (the GPU's)
            self.predicted_mask = masks[0] if masks and masks[0] is not None else self.predicted_mask
            return logits, outputs
        head = self.layers[-1]
        for b0 in range(0, n, batch_size):
            rows = np.arange(b0, min(n, b0 + batch_size))
            out = self._forward(CSRBatch(x, rows) if isinstance(x, CSRMatrix) else x[rows], False)
            outputs[rows] = out.reshape(len(rows), -1)
            if self.output_mask is not None:
                self.predicted_mask[rows] = self.output_mask.reshape(len(rows), -1)
            logits[rows] = head.z.reshape(len(rows), -1) if head.output_activation is not None else outputs[rows]
        return logits, outputs

    def _evaluate_dataset(self, data: Dataset, batch_size: int) -> dict:
        logits, outputs = self._predict_both(data.x, batch_size)
        pred = (logits if self.loss_fused else outputs).reshape(-1, self.units)
        loss = self.loss.compute(self.backend, self.loss_code, pred, data.target, data.labels,
                                 masked_weights(data.weight, self.predicted_mask),
                                 np.empty_like(pred))
        results = {"loss": float(loss + self.store.penalty())}
        for metric in self.metrics:
            fresh = copy.deepcopy(metric)
            fresh.reset()
            fresh.update(data.y, outputs.reshape(-1, self.units))
            results[metric.name] = fresh.result()
        return results

    @threads.blas_policy
    def evaluate(self, x, y, batch_size=32, sample_weight=None) -> dict:
        """{"loss": ..., "<metric>": ...} over all of (x, y)."""
        return self._evaluate_dataset(self._dataset(x, y, sample_weight), check_positive_int("batch_size", batch_size))

    @threads.blas_policy
    def predict(self, x, batch_size=32) -> np.ndarray:
        """The model's outputs (after the last activation), shape (n, *output_shape)."""
        x = self._inputs(x)
        _, outputs = self._predict_both(x, check_positive_int("batch_size", batch_size))
        return outputs.reshape((x.shape[0],) + self.output_shape)
