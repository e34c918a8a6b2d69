"""A layer the CUDA path has no device op for (a custom `build` + `call` layer with a `compute_mask` of its own or
several inputs, or whose `call` GPU arrays cannot run (nn/cudaops_tape.py), a plugin layer written with
forward/backward, a normalization over a moved axis, an Embedding with a regularizer) runs there by its own CPU
code: each step its input, mask and weights are copied to the host, its output and mask back; in the backward
its output's gradient down, its input's and weights' gradients up. Correct for any layer, at the cost of those
copies and a wait for the GPU each step; `nnctl check` names the layers that run so (`on_the_host`)."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size, op_for


def _host(array):
    return None if array is None else array.copy_to_host()


class HostOp(Op):
    """The CPU layer itself, between copies (see the module's docstring)."""

    replayable = False

    def __init__(self, ctx, layer, index):
        self.multi = bool(getattr(layer, "multi_input", False))
        super().__init__(ctx, layer, index)
        shapes = [tuple(shape) for shape in layer.input_shape] if self.multi else [self.in_shape]
        layer.needs_input_grad = self.needs_dx
        self.y = self.buffer(self.out_shape)
        self.dxs = [self.buffer(shape) for shape in shapes] if self.needs_dx else []
        self.shapes, self.mask, self.mask_host = shapes, None, None
        self.penalties = self.penalties_of(*layer.params)

    def forward(self, x, m, training):
        layer = self.layer
        for param in layer.params:  # this step's weights (the optimizer updated them on the device)
            self.weight(param, self.ctx.values).copy_to_host(param.value)
        xs = [_host(part) for part in (x if self.multi else [x])]
        masks = [None if mask is None else _host(mask).astype(bool)
                 for mask in (self.in_mask if self.multi else [self.in_mask])]
        layer.input_mask = masks if self.multi else masks[0]
        out = layer.forward(xs if self.multi else xs[0], training)
        self.mask_host = layer.compute_mask(layer.input_mask)
        for param in layer.params:  # what the forward itself updates (BatchNormalization's moving statistics)
            if not param.trainable:
                self.weight(param, self.ctx.values).copy_to_device(np.ascontiguousarray(param.value))
        y = self.y[:m * _size(self.out_shape)].reshape((m,) + self.out_shape)
        y.copy_to_device(np.ascontiguousarray(out, np.float32).reshape((m,) + self.out_shape))
        return y

    def out_mask(self, mask):
        if self.mask_host is None:
            return None
        host = np.ascontiguousarray(self.mask_host, np.uint8)
        if self.mask is None or self.mask.size < host.size:
            self.mask = self.ctx.empty(self.ctx.batch_size * _size(host.shape[1:]), np.uint8)
        device = self.mask[:host.size].reshape(host.shape)
        device.copy_to_device(host)
        return device

    def backward(self, dy, m, fused=False):
        layer = self.layer
        dx = layer.backward(dy.copy_to_host())
        for param in layer.params:
            if param.trainable:
                self.weight(param, self.ctx.grads).copy_to_device(np.ascontiguousarray(param.grad))
        if not self.needs_dx:
            return [None] * len(self.shapes) if self.multi else None
        parts = []
        for part, buffer, shape in zip(dx if self.multi else [dx], self.dxs, self.shapes):
            if part is None:
                parts.append(None)
                continue
            device = buffer[:m * _size(shape)].reshape((m,) + shape)
            device.copy_to_device(np.ascontiguousarray(part, np.float32).reshape((m,) + shape))
            parts.append(device)
        return parts if self.multi else parts[0]


def device_op(layer, reads_ids: bool = True):
    """The op class that runs `layer` on the CUDA path: its device op (a custom tape layer's: TapeOp), else HostOp.
    An Embedding reading ids another layer computes (not `reads_ids`) casts and checks them on the device
    (ComputedIdsOp)."""
    from nnctl.nn.cudaops_tape import TapeOp, runs_on_device

    op = op_for(layer)
    if op is None and runs_on_device(layer):
        return TapeOp
    if op is not None and not reads_ids and type(layer).__name__ == "Embedding":
        from nnctl.nn.cudaops_embedding import ComputedIdsOp

        return ComputedIdsOp
    return HostOp if op is None else op


def _host_layers(model, reads_input: bool = True, prefix: str = "") -> list[str]:
    """'index (type)' of the layers of `model` that run by their CPU code, those of a nested model as
    'outer/inner (type)'; `reads_input`: whether the model's input is the outer model's own."""
    from nnctl.nn.functional import NestedModel

    sources = getattr(model, "sources", [[i - 1] for i in range(len(model.layers))])
    found = []
    for index, layer in enumerate(model.layers):
        own = reads_input and all(j < 0 for j in sources[index])
        if device_op(layer, own) is HostOp:
            found.append(f"{prefix}{index} ({layer.type_name})")
        elif isinstance(layer, NestedModel):
            found += _host_layers(layer.model, own, f"{prefix}{index}/")
    return found


def on_the_host(model) -> list[str]:
    """What of `model` the CUDA path runs on the CPU each step, for `nnctl check` to say: its layers without a
    device op, by index and type (inside a nested model by both indices). (A tape layer or a user's loss whose
    ops GPU arrays cannot run is found only when it runs: a warning says so then.)"""
    layers = _host_layers(model)
    return [f"layer{'s' * (len(layers) > 1)} {', '.join(layers)}"] if layers else []
