"""The model's outputs and inputs on the CUDA path (nn/cudapath.py): each output ("head") with its loss, its loss
weight, its targets' device buffers and its place in the packed output rows; each input with its kind (token ids
or values). A Sequential model or a graph has one head (its last layer); a model with several inputs or outputs
(nn/multi.py) one per output, each a node of the graph read from wherever it sits. A per-step output (a Dense on
sequences, a recurrent layer returning sequences) is `steps` loss rows a sample, weighted under its Keras mask as
the CPU weights them (`masked_weights`). A user's loss (`call` on the ops tape) runs its ops on GPU arrays."""

from __future__ import annotations

import warnings

import numpy as np

from nnctl.nn.cudaviews import first_rows, reshaped, shaped


class DeviceHead:
    """One output: node, units, steps, loss, loss code, fused (the loss reads the node's pre-activations), loss
    weight, columns of the packed output row; and its device buffers for a batch of targets and gradients."""

    def __init__(self, ctx, node, units, steps, loss, code, fused, weight, columns, name=""):
        self.node, self.units, self.steps, self.loss = node, units, steps, loss
        self.code, self.fused, self.weight, self.columns, self.name = code, fused, weight, columns, name
        bs, self.width = ctx.batch_size, steps * units
        self.target = ctx.empty((bs, self.width))
        self.labels, self.weights = ctx.empty((bs, steps), np.int64), ctx.empty((bs, steps))
        self.masked = ctx.empty(bs * steps)  # the weights under the output's mask
        self.grad = ctx.empty(bs * self.width)

    def arrays(self, index: int, target, labels, weight, n: int) -> dict:
        """The host arrays of a dataset this head reads (its targets or labels, and its per-step weights), named
        for the device copies."""
        sparse = self.loss is not None and self.loss.sparse
        out = {f"weight{index}": np.ascontiguousarray(weight, np.float32).reshape(n, self.steps)}
        if sparse:
            out[f"labels{index}"] = np.ascontiguousarray(labels, np.int64).reshape(n, self.steps)
        else:
            out[f"target{index}"] = np.ascontiguousarray(target, np.float32).reshape(n, self.width)
        return out

    def loss_step(self, ctx, data, rows, index, out, slot):
        """This head's loss on the batch of `rows` into out[slot], and its gradient (times its loss weight)
        w.r.t. its node's output (or pre-activations when fused), shaped as the node's output."""
        k, m = ctx.k, rows.shape[0]
        op, lines = ctx.ops[self.node], m * self.steps
        target, labels, weight = self._rows(m)
        batch = ctx.batch if "staging" in data else None
        if batch is not None:
            target, labels = batch.get(f"target{index}", target), batch.get(f"labels{index}", labels)
            weight = batch[f"weight{index}"]
        elif self.loss.sparse:  # the batch's labels (or targets) and weights, in one launch
            k.take_rows_of_two(data[f"labels{index}"], data[f"weight{index}"], rows, labels, weight)
        else:
            k.take_rows_of_two(data[f"target{index}"], data[f"weight{index}"], rows, target, weight)
        weight = reshaped(weight, (lines,))  # (each view made once: nn/cudaviews.py)
        mask = ctx.node_masks[self.node] if self.steps > 1 else None
        if mask is not None:
            k.masked_loss_weights(weight, mask.reshape(lines), self.masked[:lines])
            weight = self.masked[:lines]
        pred = op.logits(m) if self.fused else reshaped(ctx.node_outputs[self.node], (lines, self.units))
        dy = op.view(self.grad, (lines, self.units))
        if self.loss.custom:
            self.tape_loss(ctx, pred, shaped(target, lines, self.units), weight, dy, out[slot:slot + 1])
        else:
            k.loss_forward_backward(self.code, self.loss.delta, pred, reshaped(target, (lines, self.units)),
                                    reshaped(labels, (lines,)), weight, dy, out, slot)
        if self.weight != 1.0:
            k.scale_values(dy.reshape(-1), self.weight, dy.reshape(-1))
        return reshaped(dy, (m,) + tuple(op.out_shape))

    def _rows(self, m):
        """The first m rows of the targets, labels and weights buffers, made once per batch size (a device-array
        slice is Python work of microseconds)."""
        return first_rows(self.target, m), first_rows(self.labels, m), first_rows(self.weights, m)

    def tape_loss(self, ctx, pred, target, weight, dy, out) -> None:
        """A user's loss (`call` on the ops tape) into out (one float64) and its gradient into dy: its ops on GPU
        arrays (nnctl/engine/cuda/ndarray.py); a loss whose ops GPU arrays cannot run goes by the host, the
        batch's rows copied down and back, from then on (with a warning saying why)."""
        from nnctl.engine.cuda.ndarray import GpuArray
        from nnctl.engine.cuda.ndfuncs import as_gpu, assign

        if not getattr(self.loss, "_gpu_arrays_refused", False):  # (remembered on the loss, for later runners)
            try:
                total, gradient = self.loss.tape_loss(*map(GpuArray.wrap, (pred, target, weight)))
                assign(GpuArray.wrap(dy), as_gpu(gradient))
                assign(GpuArray.wrap(out), as_gpu(total).reshape(1))
                return
            except TypeError as error:
                self.loss._gpu_arrays_refused = True
                warnings.warn(f"device cuda: loss '{self.loss.name}' runs on the CPU each step: its call does what "
                              f"GPU arrays do not ({error})", RuntimeWarning, stacklevel=2)
        host = np.empty(dy.shape, np.float32)
        value = self.loss.compute(ctx.model.backend, self.code, pred.copy_to_host(), target.copy_to_host(), None,
                                  weight.copy_to_host(), host)
        dy.copy_to_device(host)
        out.copy_to_device(np.array([value], np.float64))

    def output(self, ctx, m):
        """The node's outputs (after its activation) for the batch, (m, steps · units)."""
        return shaped(ctx.node_outputs[self.node], m, self.width)

    def logits(self, ctx, m):
        """What the CPU's predict keeps as logits: the pre-activations where the node has them, else the outputs."""
        op = ctx.ops[self.node]
        return op.logits(m).reshape(m, self.width) if hasattr(op, "logits") else self.output(ctx, m)


def heads_of(ctx, model) -> list[DeviceHead]:
    """The model's outputs: a model with several (nn/multi.py) lists them; otherwise the last layer, with the
    model's loss (None before compile: predict needs no loss)."""
    if hasattr(model, "heads"):
        return [DeviceHead(ctx, h.node, h.units, h.steps, h.loss, h.code, h.fused, h.weight, h.columns, h.name)
                for h in model.heads]
    return [DeviceHead(ctx, len(model.layers) - 1, model.units, model.steps, model.loss,
                       getattr(model, "loss_code", 0), getattr(model, "loss_fused", False), 1.0,
                       slice(0, model.output_units))]


def input_shapes(model) -> list[tuple]:
    """Each model input's shape per sample, in input order (input k is graph source -1 - k)."""
    return [tuple(shape) for shape in getattr(model, "input_shapes", [model.input_shape])]


def reads_ids(model, sources, k: int) -> bool:
    """Whether model input k is token ids (an Embedding reads it, or a nested model that starts with one)."""
    from nnctl.nn.cudaops_nested import reads_ids as nested_ids
    from nnctl.nn.functional import NestedModel
    from nnctl.nn.layers import Embedding

    return any(-1 - k in sources[i] and (isinstance(layer, Embedding) or isinstance(layer, NestedModel)
                                          and nested_ids(layer)) for i, layer in enumerate(model.layers))
