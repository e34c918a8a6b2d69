"""`device: cuda`: the steps of any model on the GPU — a Sequential model or a graph, with several inputs and
outputs (nn/cudaheads.py: each output's loss, weighted), shared layers and nested models — node by node in graph
order through nn/cudaops*.py's device ops (Embedding, Dense, Activation, the dropouts, Flatten, Reshape, Masking,
Conv1D/Conv2D, pooling, normalization, SimpleRNN/LSTM/GRU, Bidirectional, the merges, nested models), which call
the CUDA twins of the very kernels the CPU runs (nnctl/engine/cuda/) and cuBLAS for the GEMMs; a layer without a
device op runs by its CPU code between copies (nn/cudaops_host.py). Keras masks pass from op to op as the CPU
layers pass them.

A runner call (an epoch, or a chunk of steps when callbacks want batches) uploads the weights and optimizer
slots, runs its steps with the weights, slots, gradients, activations, targets and the dataset (copied once per
dataset) on the device, and brings back only the steps' losses, the outputs the metrics read, and the updated
weights and slots — so checkpoints, callbacks and `weights.safetensors` see the same host buffers as on the CPU,
and a GPU run evaluates, predicts and resumes on the CPU and the reverse. Dropout draws its masks from a
counter-based generator keyed by the run's seed, the draw numbered by the optimizer step
(nnctl/engine/cuda/dropout.py). A dataset too big for the GPU's memory is streamed (nn/cudadata.py). What is not on
this path yet is refused by name (`unsupported`). A chain of Dense layers of moderate size runs a runner call's
steps in one launch instead (nn/cudafused.py, `whole`).
"""

from __future__ import annotations

import warnings

import numpy as np

from nnctl.engine.cuda_device import problem
from nnctl.errors import ArgumentError, UnknownNameError
from nnctl.nn.cudadata import host_arrays, on_device
from nnctl.nn.cudaheads import heads_of, input_shapes, reads_ids
from nnctl.nn.cudaops import SparseBatch
from nnctl.nn.cudafused import GridUnavailable, whole_steps
from nnctl.nn.cudagraph import ReplayedSteps, replayable
from nnctl.nn.cudashare import backward_adding, shared_weights
from nnctl.nn.cudaviews import first_as, shaped

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


def sources_of(model) -> list[list[int]]:
    """The nodes each layer reads (-1: the model input): a graph's, or the chain of a Sequential model."""
    if hasattr(model, "sources"):
        return [list(sources) for sources in model.sources]
    return [[i - 1] for i in range(len(model.layers))]


def unsupported(model) -> str | None:
    """Why `model` cannot train on the CUDA path (None when it can)."""
    from nnctl.nn.cudaops import _Activated
    from nnctl.nn.cudaops_host import device_op

    if model.dtype != np.float32:
        return "the CUDA backend trains in float32"
    fused = ([head.node for head in model.heads if head.fused] if hasattr(model, "heads") else
             [len(model.layers) - 1] if getattr(model, "loss_fused", False) else [])
    for node in fused:  # a loss fused with its activation reads the pre-activations of a Dense-like layer
        if not issubclass(device_op(model.layers[node]), _Activated):
            return f"layer {node} ({model.layers[node].type_name}) has no logits on the GPU for its loss to read"
    return None


class CudaPath:
    """The device ops and buffers of one model at one batch size, and `train`/`predict` with the CPU fast path's
    signatures."""

    def __init__(self, model, batch_size: int, sparse: bool):
        from numba import cuda

        from nnctl.engine import cuda as kernels
        from nnctl.engine.cuda import blas
        from nnctl.nn.cudaops_host import device_op

        self.cuda, self.k, self.blas = cuda, kernels, blas
        self.model, self.batch_size, self.sparse = model, batch_size, sparse
        store, opt = model.store, model.optimizer
        self.values = self.empty(store.values.shape[0])
        self.grads = self.zeros(store.grads.shape[0])  # (a gradient no op writes stays 0)
        self.offsets = cuda.to_device(store.offsets)
        # The weights no optimizer steps (moving statistics, frozen layers), and their unused gradients.
        self.fixed = self.empty(max(1, store.fixed_values.shape[0]))
        self.fixed_grads = self.empty(max(1, store.fixed_grads.shape[0]))
        self.slots = [self.empty(slot.shape[0]) for slot in opt.slots] if opt is not None else []
        self.views: dict = {}  # the ops' weight views, by (weight, buffer)
        self.sources = sources_of(model)
        self.id_checks: list = []  # the ops that check computed token ids on the device (start/finish a run)
        self.ops = [device_op(layer, not self.needs_dx(index))(self, layer, index)
                    for index, layer in enumerate(model.layers)]
        self.heads = heads_of(self, model)
        self.again = shared_weights(self, self.ops, list(getattr(model, "first_use", range(len(self.ops)))))
        self.several = hasattr(model, "head_losses_buffer")  # several inputs or outputs: each output's loss logged
        self.fused = {head.node for head in self.heads if head.fused}
        # A node read by several others (or read and an output) sums its gradients into a buffer of its own.
        readers = [sum(sources.count(i) for sources in self.sources) + any(h.node == i for h in self.heads)
                   for i in range(len(self.ops))]
        self.sums = [self.empty(batch_size * int(np.prod(op.out_shape))) if count > 1 else None
                     for op, count in zip(self.ops, readers)]
        self.shapes = input_shapes(model)
        self.features = [int(np.prod(shape)) for shape in self.shapes]
        self.ids = [reads_ids(model, self.sources, k) for k in range(len(self.shapes))]
        self.xbufs = [self.empty(1 if sparse else batch_size * f, np.int32 if ids else np.float32)
                      for f, ids in zip(self.features, self.ids)]
        self.data_copies: list = []  # [(host Dataset or input, its device copies)], the last two seen (cudadata)
        self.whole = whole_steps(self)  # a Dense model's steps in one launch (nn/cudafused.py), or None
        # Else (or where the GPU refuses that launch) the steps replayed as a CUDA graph (nn/cudagraph.py), where
        # nothing in them is decided on the host; `counter` their step number on the device, for dropout.
        self.replayed = ReplayedSteps(self) if replayable(self) else None
        self.counter = None
        self.head_losses = self.penalties = None  # (a call's per-step losses of several outputs: `train`)

    def needs_dx(self, index: int) -> bool:
        """Whether node `index` reads another layer's output (the model's input takes no gradient)."""
        return any(j >= 0 for j in self.sources[index])

    def empty(self, shape, dtype=np.float32):
        return self.cuda.device_array(shape, dtype)

    def zeros(self, size):
        return self.cuda.to_device(np.zeros(size, np.float32))

    # ---- host ↔ device -------------------------------------------------------------------------
    def _upload_state(self) -> None:
        self._upload_weights()
        for device, host in zip(self.slots, self.model.optimizer.slots):
            device.copy_to_device(host)

    def _upload_weights(self) -> None:
        store = self.model.store
        self.values.copy_to_device(store.values)
        if store.fixed_values.shape[0]:
            self.fixed.copy_to_device(store.fixed_values)

    def _download_state(self) -> None:
        store, opt = self.model.store, self.model.optimizer
        self.values.copy_to_host(store.values)
        if store.fixed_values.shape[0]:
            self.fixed.copy_to_host(store.fixed_values)
        for device, host in zip(self.slots, opt.slots):
            device.copy_to_host(host)

    # ---- one step --------------------------------------------------------------------------------
    def _forward(self, data, rows, training=False, host_rows=None) -> None:
        """The batch of `rows` (device row numbers; `host_rows`, the same on the host, for a streamed dataset)
        through the ops, keeping each node's output and mask; a streamed batch's device rows are kept in
        `self.batch` for the losses."""
        m, xs = rows.shape[0], []
        if "staging" in data:
            self.batch = data["staging"].load(host_rows)
        for k, (shape, features) in enumerate(zip(self.shapes, self.features)):
            if self.sparse:
                xs.append(SparseBatch(data, rows))
                continue
            if "staging" in data:
                x = self.batch[f"x{k}"]
            else:
                x = first_as(self.xbufs[k], (m, features))
                self.k.take_rows(data[f"x{k}"], rows, x)
            xs.append(shaped(x, (m,) + shape))
        # The nodes in graph order, each on its sources' outputs (input k is source -1 - k); Keras masks
        # (Embedding's mask_zero, Masking) passed on as the CPU's layers pass them.
        outputs, masks = [], []
        for op, sources in zip(self.ops, self.sources):
            ins = [xs[-1 - j] if j < 0 else outputs[j] for j in sources]
            ms = [None if j < 0 else masks[j] for j in sources]
            op.in_mask = ms if op.multi else ms[0]
            outputs.append(op.forward(ins if op.multi else ins[0], m, training))
            masks.append(op.out_mask(op.in_mask))
        self.node_outputs, self.node_masks = outputs, masks

    def _step(self, data, rows, slot, sinks, host_rows=None, update=None) -> None:
        """One training step. `sinks`: (losses, head_losses, penalties); its loss goes to losses[slot] (one head)
        or, with several, each head's weighted loss to head_losses[head, slot] and the penalties to
        penalties[slot]. `update`: the optimizer's step (default: at the host's step count, counted on)."""
        k = self.k
        losses, head_losses, penalties = sinks
        self._forward(data, rows, training=True, host_rows=host_rows)
        several = self.several
        seeds = {head.node: head.loss_step(self, data, rows, index, head_losses[index] if several else losses, slot)
                 for index, head in enumerate(self.heads)}
        self._backward(seeds, rows.shape[0])
        for op in self.ops:  # the penalties in parameter order, added to the step's loss
            for span, l1, l2 in op.penalties:
                k.regularize(self.values[span], self.grads[span], l1, l2, penalties if several else losses, slot)
        if update is not None:
            update()
            return
        opt = self.model.optimizer
        k.optimizer_step(opt.code, opt.hyperparameters(), opt.iterations, self.offsets, self.values, self.grads,
                         *self.slots, opt.clip_mode, opt.clip)
        opt.iterations += 1

    def _backward(self, seeds: dict, m) -> None:
        """Every node in reverse graph order, each on the sum of its loss gradient (an output's, in `seeds`) and
        its readers' gradients, added reader by reader in that order, as the CPU's graph adds them."""
        grads: list = [seeds.get(index) for index in range(len(self.ops))]
        written: set = set()  # the weights whose gradients a use of their layer wrote in this backward
        for index in range(len(self.ops) - 1, -1, -1):
            if grads[index] is None:
                continue
            op = self.ops[index]
            dx = backward_adding(self, self.again, written, index, op, grads[index], m, index in self.fused)
            for j, part in zip(self.sources[index], dx if op.multi else [dx]):
                if part is None or j < 0:
                    continue
                if grads[j] is None:
                    grads[j] = part
                else:
                    total = self.sums[j][:part.size]
                    self.k.add(grads[j].reshape(-1), part.reshape(-1), total)
                    grads[j] = total.reshape(part.shape)

    def _whole(self, data) -> bool:
        """Whether this path runs its steps in one launch (a Dense model whose data is on the device)."""
        return self.whole is not None and "staging" not in data

    def _replays(self, data) -> bool:
        """Whether this path replays its steps as CUDA graphs (nn/cudagraph.py): not for a streamed dataset."""
        return self.replayed is not None and "staging" not in data

    def _whole_or_layers(self, run, *args) -> None:
        """run(*args), a one-launch runner's; where the GPU refuses its cooperative grid, the path goes layer by
        layer from then on (the caller runs the steps that way), with a warning saying why."""
        try:
            run(*args)
        except GridUnavailable as error:
            self.whole = None
            warnings.warn(f"device cuda: the model's steps run launch by launch: this GPU refused a cooperative "
                          f"grid ({error})", RuntimeWarning, stacklevel=3)

    # ---- the fast path's entry points ------------------------------------------------------------
    def train(self, data, order, first, last, outputs, step_losses) -> None:
        n, bs, heads = order.shape[0], self.batch_size, self.heads
        device = on_device(self, data, *host_arrays(data))
        self._upload_state()
        d_order = self.cuda.to_device(np.ascontiguousarray(order, np.int64))
        lo, hi = first * bs, min(n, last * bs)
        d_outputs = [self.empty((max(1, hi - lo), head.width)) for head in heads]
        steps = step_losses.shape[0]
        losses = self.empty(steps, np.float64)
        table = losses.reshape(1, steps)  # each step's losses: one head's; or each head's, then the penalties
        if self.several:
            table = self.cuda.to_device(np.zeros((len(heads) + 1, steps)))
            self.head_losses, self.penalties = table[:len(heads)], table[len(heads)]
        for check in self.id_checks:
            check.start()
        if self._whole(device):
            self._whole_or_layers(self.whole.train, device, d_order, first, last, losses, d_outputs[0], lo)
        if not self._whole(device) and self._replays(device):
            self.replayed.train(device, d_order, first, last, table, d_outputs, lo)
        elif not self._whole(device):  # (also where the GPU just refused the one launch)
            for step in range(first, last):
                b0, b1 = step * bs, min(n, (step + 1) * bs)
                self._step(device, d_order[b0:b1], step, (losses, self.head_losses, self.penalties), order[b0:b1])
                for head, d_out in zip(heads, d_outputs):
                    d_out[b0 - lo:b1 - lo].copy_to_device(head.output(self, b1 - b0))
        for check in self.id_checks:  # a bad computed id raises before the weights come back (the last good stay)
            check.finish()
        self._download_state()
        for head, d_out in zip(heads, d_outputs):
            outputs[lo:hi, head.columns] = d_out.copy_to_host()[:hi - lo]
        if not self.several:
            step_losses[first:last] = losses.copy_to_host()[first:last]
            return
        # As the CPU adds them (nn/multi.py): each head's weighted loss in head order, then the penalties.
        per_head, penalties = self.head_losses.copy_to_host(), self.penalties.copy_to_host()
        record = self.model.head_losses_buffer(step_losses.shape[0])
        for step in range(first, last):
            total = 0.0
            for index, head in enumerate(heads):
                record[step, index] = head.weight * float(per_head[index, step])
                total += record[step, index]
            step_losses[step] = total + penalties[step]

    def predict(self, x, count, logits, outputs) -> list:
        """Fills `logits` and `outputs` (packed rows) for `count` rows of `x`; returns each head's Keras mask
        rows (count, steps) for a per-step output that carries one, else None."""
        device = on_device(self, x, host_arrays(x)[0])
        self._upload_weights()
        heads = self.heads
        d_logits = [self.empty((max(1, count), head.width)) for head in heads]
        d_outputs = [self.empty((max(1, count), head.width)) for head in heads]
        d_masks = [None] * len(heads)
        d_rows = self.cuda.to_device(np.arange(count, dtype=np.int64))
        for check in self.id_checks:
            check.start()
        if self._whole(device):
            self._whole_or_layers(self.whole.predict, device["x0"], d_rows, d_logits[0], d_outputs[0])
        if not self._whole(device) and self._replays(device):
            self.replayed.predict(device, d_rows, count, d_logits, d_outputs, d_masks)
        elif not self._whole(device):
            for b0 in range(0, count, self.batch_size):
                b1 = min(count, b0 + self.batch_size)
                self._forward(device, d_rows[b0:b1], host_rows=np.arange(b0, b1))
                for index, head in enumerate(heads):
                    d_logits[index][b0:b1].copy_to_device(head.logits(self, b1 - b0))
                    d_outputs[index][b0:b1].copy_to_device(head.output(self, b1 - b0))
                    mask = self.node_masks[head.node] if head.steps > 1 else None
                    if mask is not None:
                        if d_masks[index] is None:
                            d_masks[index] = self.empty((max(1, count), head.steps), np.uint8)
                        d_masks[index][b0:b1].copy_to_device(mask.reshape(b1 - b0, head.steps))
        for check in self.id_checks:
            check.finish()
        for head, d_logit, d_output in zip(heads, d_logits, d_outputs):
            logits[:count, head.columns] = d_logit.copy_to_host()[:count]
            outputs[:count, head.columns] = d_output.copy_to_host()[:count]
        return [None if d is None else d.copy_to_host()[:count].astype(bool) for d in d_masks]
