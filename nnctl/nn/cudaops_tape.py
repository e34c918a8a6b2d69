"""A custom `build` + `call` layer on the GPU: its `call` runs on GpuArrays (nnctl/engine/cuda/ndarray.py), which
NumPy's functions accept, so every `nnctl.ops` op is a kernel or a cuBLAS GEMM and the backward is the same ops
tape as on the CPU, on device arrays — no copy to the host and no wait for the GPU each step. The layer's weights
are the device views of the flat buffers, put in place of its weights' host values while `call` runs.

A `call` that does what GpuArrays cannot (a NumPy function they do not implement, a Python branch on a value,
`np.asarray`) raises a TypeError; the layer then runs by its CPU code between copies (HostOp) from that step on,
and a warning names it and says why. A layer with a `compute_mask`, `forward` or `backward` of its own, or
several inputs, runs that way from the start.
"""

from __future__ import annotations

import warnings

from nnctl.nn.cudaops import Op
from nnctl.nn.cudaops_host import HostOp


def runs_on_device(layer) -> bool:
    """Whether `layer` is a tape layer TapeOp runs: written with `call` (its forward and backward the tape's, not
    a hand-written override), one input, its mask passed on or dropped by the base rule."""
    from nnctl.nn.layers.base import Layer

    kind = type(layer)
    return (getattr(layer, "_custom", lambda: False)() and not getattr(layer, "multi_input", False)
            and all(getattr(kind, name) is getattr(Layer, name) for name in ("forward", "backward", "compute_mask")))


class TapeOp(Op):
    """The layer's `call` and tape on device arrays (see the module's docstring)."""

    replayable = False  # (its ops decide shapes and indices on the host)

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.y = self.buffer(self.out_shape)
        self.dx = self.buffer(self.in_shape) if self.needs_dx else None
        self.penalties = self.penalties_of(*layer.params)
        # The layer's CPU code, once its call failed on the device (remembered on the layer: a later runner of the
        # same model, at another batch size, goes there at once, without a second warning).
        self.host = HostOp(ctx, layer, index) if getattr(layer, "_gpu_arrays_refused", False) else None
        self.tape = None
        self._values: dict = {}  # each weight's GpuArray over its device view, made once (the tape's leaf)

    def _value(self, param):
        from nnctl.engine.cuda.ndarray import GpuArray

        if id(param) not in self._values:
            self._values[id(param)] = GpuArray.wrap(self.weight(param, self.ctx.values))
        return self._values[id(param)]

    def forward(self, x, m, training):
        if self.host is None:
            try:
                return self._forward(x, m, training)
            except TypeError as error:
                self._to_host(error)
        self.host.in_mask = self.in_mask
        return self.host.forward(x, m, training)

    def _forward(self, x, m, training):
        from nnctl import ops
        from nnctl.engine.cuda.ndarray import GpuArray
        from nnctl.engine.cuda.ndfuncs import as_gpu, assign
        from nnctl.nn.layers.custom import _call

        layer = self.layer
        saved = [param.value for param in layer.params]
        try:
            for param in layer.params:
                param.value = self._value(param)
            layer.input_mask = None if self.in_mask is None else GpuArray.wrap(self.in_mask).astype(bool)
            with ops.GradientTape() as tape:
                inputs = ops.Tensor(GpuArray.wrap(x))
                out = _call(layer, inputs, training)
            leaves = [ops.core._tensor(param) for param in layer.params if param.trainable]
        finally:
            for param, value in zip(layer.params, saved):
                param.value = value
            layer.input_mask = None
        out = out if isinstance(out, ops.Tensor) else ops.Tensor(as_gpu(out))
        if tuple(out.shape) != (m,) + self.out_shape:
            raise ValueError(f"layer {self.index} ({layer.type_name}): call gave shape {tuple(out.shape)} on the "
                             f"GPU, {(m,) + self.out_shape} expected")
        y = self.view(self.y, (m,) + self.out_shape)
        assign(GpuArray.wrap(y), as_gpu(out.value))
        self.tape, self.x, self.training = (tape, inputs, out, leaves), x, training
        return y

    def out_mask(self, mask):
        return super().out_mask(mask) if self.host is None else self.host.out_mask(mask)

    def backward(self, dy, m, fused=False):
        if self.host is None:
            try:
                return self._backward(dy, m)
            except TypeError as error:  # the forward ran on the device: run this step's forward again on the host
                self._to_host(error)
                self.host.in_mask = self.in_mask
                self.host.forward(self.x, m, self.training)
        return self.host.backward(dy, m, fused)

    def _backward(self, dy, m):
        from nnctl.engine.cuda.ndarray import GpuArray
        from nnctl.engine.cuda.ndfuncs import as_gpu, assign

        tape, inputs, out, leaves = self.tape
        trainable = [param for param in self.layer.params if param.trainable]
        grads = tape.gradient(out, [inputs] + leaves, output_gradient=GpuArray.wrap(dy.reshape(out.shape)))
        for param, grad in zip(trainable, grads[1:]):
            assign(GpuArray.wrap(self.weight(param, self.ctx.grads)), as_gpu(grad))
        self.tape = None  # the tape holds the step's arrays: let them go back to the pool
        if not self.needs_dx:
            return None
        dx = self.view(self.dx, (m,) + self.in_shape)
        assign(GpuArray.wrap(dx), as_gpu(grads[0]))
        return dx

    def _to_host(self, error) -> None:
        self.tape = None
        self.host = HostOp(self.ctx, self.layer, self.index)
        self.layer._gpu_arrays_refused = True
        warnings.warn(f"device cuda: layer {self.index} ({self.layer.type_name}) runs by its CPU code each step: "
                      f"its call does what GPU arrays do not ({error})", RuntimeWarning, stacklevel=2)
