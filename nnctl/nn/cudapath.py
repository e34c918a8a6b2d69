"""`device: cuda` for stacks of Dense layers: the fast path's steps (nn/fastloop.py) on the GPU, through the
CUDA twins of the very kernels the CPU runs (nnctl/engine/cuda/) and cuBLAS for the GEMMs.

A runner call (an epoch, or a chunk of steps when callbacks want batches) uploads the weights and optimizer
slots, runs its steps with the weights, slots, gradients, activations, targets and the dataset (copied once per
dataset) on the device, and brings back only the steps' losses, the outputs the metrics read, and the updated
weights and slots — so checkpoints, callbacks and `weights.safetensors` see the same host buffers as on the CPU,
and a GPU run evaluates, predicts and resumes on the CPU and the reverse. Dropout between Dense layers draws
its masks from a counter-based generator keyed by the run's seed, the draw numbered by the optimizer step
(nnctl/engine/cuda/dropout.py). The other layer families and several outputs are not on this path yet
(`unsupported` says which).
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.cpu.dense import LINEAR
from nnctl.engine.csr import CSRMatrix
from nnctl.engine.cuda_device import problem
from nnctl.errors import ArgumentError, UnknownNameError
from nnctl.nn.layers import Dense, Dropout

DEVICES = ("cpu", "cuda")


def check_device(device: str) -> str:
    """`device` when a model can use it; an error naming what is missing for `cuda` (no GPU, no extra)."""
    if device not in DEVICES:
        raise UnknownNameError("device", device, list(DEVICES))
    reason = problem() if device == "cuda" else None
    if reason:
        raise ArgumentError(f"device cuda: {reason}")
    return device


def path(model, batch_size: int, sparse: bool) -> "CudaPath":
    """The model's CudaPath for this batch size and input kind (made once: its device buffers are reused by
    every epoch and validation); an error saying why when the model is not on the CUDA backend yet."""
    reason = unsupported(model)
    if reason:
        raise ArgumentError(f"device cuda: {reason}")
    key = (batch_size, sparse, id(model.store), id(model.optimizer))
    cache = model.__dict__.setdefault("_cuda_paths", {})
    if key not in cache:
        cache.clear()
        cache[key] = CudaPath(model, batch_size, sparse)
    return cache[key]


def fast_path(model, batch_size: int, sparse: bool):
    """The compiled runner of a model: its CudaPath on `cuda`, else the CPU's FastPath."""
    from nnctl.nn.fastpath import FastPath

    return path(model, batch_size, sparse) if model.device == "cuda" else FastPath(model, batch_size, sparse)


def unsupported(model) -> str | None:
    """Why `model` cannot train on the CUDA path (None when it can)."""
    if type(model).__name__ != "Sequential":
        return "a functional (graph) model is not on the CUDA backend yet: it runs stacks of Dense layers so far"
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Dropout):
            if index == 0 or index == len(model.layers) - 1 or not isinstance(model.layers[index - 1], Dense):
                return (f"layer {index} (dropout) is on the CUDA backend only between two Dense layers (after one, "
                        f"before another)")
            continue
        if not isinstance(layer, Dense):
            return (f"layer {index} ({layer.type_name}) is not on the CUDA backend yet: it runs stacks of Dense "
                    f"layers (with Dropout between them) so far")
        if len(layer.input_shape) != 1:
            return f"layer {index} (dense) reads a {len(layer.input_shape) + 1}-D input; the CUDA backend takes 2-D"
    if getattr(model, "output_names", None) and len(model.output_names) > 1:
        return "a model with several outputs is not on the CUDA backend yet"
    if model.dtype != np.float32:
        return "the CUDA backend trains in float32"
    if getattr(model.loss, "custom", False):
        return "a custom loss runs on the ops tape, which is not on the CUDA backend yet"
    if model.store.fixed:
        return "frozen weights (trainable: false) are not on the CUDA backend yet"
    if len(model.store.weights) != sum(len(layer.params) for layer in model.layers):
        return "a shared layer is not on the CUDA backend yet"
    return None


def _dropout_key(model, index: int) -> int:
    """The key of the Dropout layer at `index`: from the run's seed (a seeded run drops the same units on every
    run, and on resuming), else drawn from the model's generator."""
    seed = model.seed if model.seed is not None else int(model.rng.integers(1 << 62))
    return (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) % (1 << 64)


class _Layer:
    """One Dense layer's geometry and its weights' places in the flat buffers."""

    dropout = 0.0  # the rate of a Dropout layer after this one
    key = 0  # its counter-based generator's key

    def __init__(self, layer, store):
        self.din, self.units, self.act, self.alpha = layer.input_shape[0], layer.units, layer.act_code, layer.alpha
        w = store.slice_of(layer.kernel)
        self.w = (w.start, w.stop)
        self.b = None if layer.bias is None else (store.slice_of(layer.bias).start,
                                                  store.slice_of(layer.bias).stop)
        self.penalties = [(span, p.regularizer.l1, p.regularizer.l2)
                          for span, p in ((self.w, layer.kernel), (self.b, layer.bias))
                          if p is not None and p.regularizer is not None]


class CudaPath:
    """The device buffers of one model at one batch size, and `train`/`predict` with the fast path's
    signatures."""

    def __init__(self, model, batch_size: int, sparse: bool):
        from numba import cuda

        from nnctl.engine import cuda as kernels
        from nnctl.engine.cuda import blas

        self.cuda, self.k, self.blas = cuda, kernels, blas
        self.model, self.batch_size, self.sparse = model, batch_size, sparse
        store, opt = model.store, model.optimizer
        self.layers = []
        for index, layer in enumerate(model.layers):
            if isinstance(layer, Dropout):  # after a Dense layer (`unsupported`): that layer's output is dropped
                self.layers[-1].dropout, self.layers[-1].key = layer.rate, _dropout_key(model, index)
            else:
                self.layers.append(_Layer(layer, store))
        widest = max(layer.units for layer in self.layers)
        widest_in = max([widest] + [layer.din for layer in self.layers[1:]])
        empty = cuda.device_array
        self.values, self.grads = empty(store.values.shape[0], np.float32), empty(store.grads.shape[0], np.float32)
        self.offsets = cuda.to_device(store.offsets)
        self.slots = [empty(slot.shape[0], np.float32) for slot in opt.slots] if opt is not None else []
        self.zero_bias, self.dbuf = cuda.to_device(np.zeros(widest, np.float32)), empty(widest, np.float32)
        self.xbuf = empty(max(1, batch_size * (0 if sparse else self.layers[0].din)), np.float32)
        self.zbuf = [empty(batch_size * layer.units, np.float32) for layer in self.layers]
        self.ybuf = [empty(batch_size * layer.units, np.float32) for layer in self.layers]
        self.gbuf = [empty(batch_size * widest_in, np.float32) for _ in range(2)]
        # A dropped layer's output and mask (the next layer reads the output).
        self.dropped = [empty(batch_size * layer.units if layer.dropout else 1, np.float32) for layer in self.layers]
        self.masks = [empty(batch_size * layer.units if layer.dropout else 1, np.float32) for layer in self.layers]
        out_units = self.layers[-1].units
        self.tbuf = empty((batch_size, out_units), np.float32)
        self.lbuf, self.wbuf = empty((batch_size, 1), np.int64), empty((batch_size, 1), np.float32)
        self._data: list = []  # [(host Dataset or input, its device copies)], the last two seen

    # ---- host ↔ device -------------------------------------------------------------------------
    def _upload_state(self) -> None:
        store, opt = self.model.store, self.model.optimizer
        self.values.copy_to_device(store.values)
        for device, host in zip(self.slots, opt.slots):
            device.copy_to_device(host)

    def _download_state(self) -> None:
        store, opt = self.model.store, self.model.optimizer
        self.values.copy_to_host(store.values)
        for device, host in zip(self.slots, opt.slots):
            device.copy_to_host(host)

    def _on_device(self, host, x, target=None, labels=None, weight=None) -> dict:
        """The device copies of one dataset (or inference input), made once and kept while it is in use."""
        for seen, copies in self._data:
            if seen is host:
                return copies
        to = self.cuda.to_device
        copies = ({"indptr": to(x.indptr), "indices": to(x.indices), "values": to(x.values)}
                  if isinstance(x, CSRMatrix) else {"x": to(np.ascontiguousarray(x, np.float32))})
        if target is not None:
            copies.update(target=to(target), labels=to(np.ascontiguousarray(labels, np.int64).reshape(-1, 1)),
                          weight=to(np.ascontiguousarray(weight, np.float32).reshape(-1, 1)))
        self._data = [*self._data[-1:], (host, copies)]
        return copies

    # ---- one step --------------------------------------------------------------------------------
    def _matrix(self, buf, rows, cols):
        return buf[:rows * cols].reshape(rows, cols)

    def _weights(self, layer, buf):
        return buf[layer.w[0]:layer.w[1]].reshape(layer.din, layer.units)

    def _input(self, index, m, training):
        """Layer `index`'s input for a batch of m rows: the previous layer's output, dropped when training."""
        previous = self.layers[index - 1]
        source = self.dropped[index - 1] if training and previous.dropout else self.ybuf[index - 1]
        return self._matrix(source, m, previous.units)

    def _forward(self, data, rows, training=False) -> None:
        k, m = self.k, rows.shape[0]
        for index, layer in enumerate(self.layers):
            w, z = self._weights(layer, self.values), self._matrix(self.zbuf[index], m, layer.units)
            if index > 0:
                self.blas.gemm(self._input(index, m, training), w, z)
            elif self.sparse:
                k.csr_matmul(data["indptr"], data["indices"], data["values"], rows, w, z)
            else:
                xb = self._matrix(self.xbuf, m, layer.din)
                k.take_rows(data["x"], rows, xb)
                self.blas.gemm(xb, w, z)
            bias = self.zero_bias[:layer.units] if layer.b is None else self.values[layer.b[0]:layer.b[1]]
            k.bias_act_forward(z, bias, layer.act, layer.alpha, self._matrix(self.ybuf[index], m, layer.units))
            if training and layer.dropout:  # draw number = the optimizer step: a resumed run draws the same
                size = m * layer.units
                k.dropout_counter_forward(self.ybuf[index][:size], layer.key, self.model.optimizer.iterations,
                                          layer.dropout, self.dropped[index][:size], self.masks[index][:size])

    def _step(self, data, rows, step, losses) -> None:
        model, k, m = self.model, self.k, rows.shape[0]
        self._forward(data, rows, training=True)
        last, head = len(self.layers) - 1, self.layers[-1]
        z_out, y_out = self._matrix(self.zbuf[last], m, head.units), self._matrix(self.ybuf[last], m, head.units)
        if not model.loss.sparse:
            k.take_rows(data["target"], rows, self.tbuf[:m])
        else:
            k.take_rows(data["labels"], rows, self.lbuf[:m])
        k.take_rows(data["weight"], rows, self.wbuf[:m])
        dy = self._matrix(self.gbuf[0], m, head.units)
        k.loss_forward_backward(model.loss_code, model.loss.delta, z_out if model.loss_fused else y_out,
                                self.tbuf[:m], self.lbuf[:m].reshape(m), self.wbuf[:m].reshape(m), dy, losses, step)
        current = 0
        for index in range(last, -1, -1):
            layer = self.layers[index]
            dy = self._matrix(self.gbuf[current], m, layer.units)
            dz = self._matrix(self.gbuf[1 - current], m, layer.units)
            act = LINEAR if index == last and model.loss_fused else layer.act
            db = self.dbuf[:layer.units] if layer.b is None else self.grads[layer.b[0]:layer.b[1]]
            k.bias_act_backward(dy, self._matrix(self.zbuf[index], m, layer.units),
                                self._matrix(self.ybuf[index], m, layer.units), act, layer.alpha, dz, db)
            dw = self._weights(layer, self.grads)
            if index == 0:
                if self.sparse:
                    k.csr_t_matmul(data["indptr"], data["indices"], data["values"], rows, dz, dw)
                else:
                    self.blas.gemm_tn(self._matrix(self.xbuf, m, layer.din), dz, dw)
            else:
                self.blas.gemm_tn(self._input(index, m, True), dz, dw)
                self.blas.gemm_nt(dz, self._weights(layer, self.values), self._matrix(self.gbuf[current], m, layer.din))
                if self.layers[index - 1].dropout:  # through the mask, to the undropped output
                    size = m * layer.din
                    k.multiply(self.gbuf[current][:size], self.masks[index - 1][:size], self.gbuf[current][:size])
        for layer in self.layers:  # the penalties in parameter order, added to the step's loss
            for (start, stop), l1, l2 in layer.penalties:
                k.regularize(self.values[start:stop], self.grads[start:stop], l1, l2, losses, step)
        opt = model.optimizer
        k.optimizer_step(opt.code, opt.hyperparameters(), opt.iterations, self.offsets, self.values, self.grads,
                         *self.slots, opt.clip_mode, opt.clip)
        opt.iterations += 1

    # ---- the fast path's entry points ------------------------------------------------------------
    def train(self, data, order, first, last, outputs, step_losses) -> None:
        n, bs = order.shape[0], self.batch_size
        device = self._on_device(data, data.x, data.target, data.labels, data.weight)
        self._upload_state()
        d_order = self.cuda.to_device(np.ascontiguousarray(order, np.int64))
        lo, hi = first * bs, min(n, last * bs)
        d_outputs = self.cuda.device_array((max(1, hi - lo), self.layers[-1].units), np.float32)
        losses = self.cuda.device_array(step_losses.shape[0], np.float64)
        for step in range(first, last):
            b0, b1 = step * bs, min(n, (step + 1) * bs)
            self._step(device, d_order[b0:b1], step, losses)
            y_out = self._matrix(self.ybuf[-1], b1 - b0, self.layers[-1].units)
            d_outputs[b0 - lo:b1 - lo].copy_to_device(y_out)
        self._download_state()
        outputs[lo:hi] = d_outputs.copy_to_host()[:hi - lo]
        step_losses[first:last] = losses.copy_to_host()[first:last]

    def predict(self, x, count, logits, outputs) -> None:
        device = self._on_device(x, x)
        self.values.copy_to_device(self.model.store.values)
        units = self.layers[-1].units
        d_logits, d_outputs = (self.cuda.device_array((max(1, count), units), np.float32) for _ in range(2))
        d_rows = self.cuda.to_device(np.arange(count, dtype=np.int64))
        for b0 in range(0, count, self.batch_size):
            b1 = min(count, b0 + self.batch_size)
            self._forward(device, d_rows[b0:b1])
            d_logits[b0:b1].copy_to_device(self._matrix(self.zbuf[-1], b1 - b0, units))
            d_outputs[b0:b1].copy_to_device(self._matrix(self.ybuf[-1], b1 - b0, units))
        logits[:count], outputs[:count] = d_logits.copy_to_host()[:count], d_outputs.copy_to_host()[:count]
