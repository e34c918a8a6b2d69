"""The layers the CUDA path runs (nn/cudapath.py), each a forward and a backward on device arrays through the CUDA
twins of the kernels the CPU layers call: Embedding (first), Dense (dense or CSR input), Activation, Dropout,
SpatialDropout1D/2D, Flatten, Reshape, Conv1D/Conv2D (im2col + cuBLAS over the whole batch, the columns kept for
the backward), the max/average pooling layers and their global forms, and (nn/cudaops_recurrent.py)
SimpleRNN/LSTM/GRU and Bidirectional (every merge mode) with masks and dropout. Each op reads its geometry and its
weights' places in the flat buffers from the layer itself, so the weights, their names and layouts are the CPU's.

Buffers are flat device arrays sized for the full batch; a shorter last batch uses their first rows.
"""

from __future__ import annotations

from importlib import import_module

import numpy as np

from nnctl.engine.convolution import ConvPlan
from nnctl.engine.cpu.dense import LINEAR
from nnctl.nn.layers import (GRU, LSTM, Activation, BatchNormalization, Bidirectional, Dense, Dropout, Embedding,
                              Flatten, GlobalAveragePooling1D, LayerNormalization, Masking, Reshape, SimpleRNN)
from nnctl.nn.layers.conv import BaseConv
from nnctl.nn.layers.pooling import _Pooled
from nnctl.nn.layers.regularization import SpatialDropout
from nnctl.nn.cudaviews import _size, first_as, first_rows, reshaped


class SparseBatch:
    """A batch of CSR rows on the device: what the first Dense layer reads instead of a dense array."""

    def __init__(self, data, rows):
        self.indptr, self.indices, self.values, self.rows = data["indptr"], data["indices"], data["values"], rows


class Op:
    """One layer on the device. `ctx` is the CudaPath: kernels (`k`), GEMMs (`blas`), `values`/`grads` (the flat
    weight buffers), `batch_size`, `empty(size, dtype)`."""

    penalties: list = []
    in_mask = None  # the Keras mask of the input: an (m, steps) uint8 device array, or None
    multi = False  # a merge: forward takes a list of inputs, backward gives a list of gradients
    replayable = True  # its launches the same every step (nothing decided on the host): nn/cudagraph.py

    def __init__(self, ctx, layer, index):
        self.ctx, self.layer, self.index = ctx, layer, index
        self.in_shape = tuple(layer.input_shape) if not self.multi else None
        self.out_shape = tuple(layer.output_shape)
        self.needs_dx = ctx.needs_dx(index)  # reads another layer's output (not only the model's input)

    def out_mask(self, mask):
        """The output's mask given the input's (after `forward`): passed on by the layers that support masking,
        dropped by the others, as the CPU layer's `compute_mask`."""
        return mask if self.layer.supports_masking else None

    def buffer(self, shape_per_sample, dtype=np.float32):
        return self.ctx.empty(self.ctx.batch_size * _size(shape_per_sample), dtype)

    def view(self, buffer, shape):
        """The first elements of `buffer` (one of the path's device buffers) as an array of `shape`, made once."""
        return first_as(buffer, shape)

    def reshaped(self, array, *shape):
        """array reshaped (shape as reshape takes it), made once per array and shape."""
        return reshaped(array, tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def first_rows(self, array, m):
        """array[:m], made once per array and m."""
        return first_rows(array, m)

    def weight(self, param, buffer):
        """The device view of `param` in `buffer` (ctx.values or ctx.grads): a trainable weight's place there;
        a non-trainable one's (moving statistics, a frozen layer's weights) in ctx.fixed / ctx.fixed_grads,
        which no optimizer steps."""
        key = (id(param), id(buffer))
        view = self.ctx.views.get(key)  # made once: a device-array view costs microseconds of Python per step
        if view is None:
            store = self.ctx.model.store
            if param.trainable:
                span = store.slice_of(param)
            else:
                index = store.fixed.index(param)
                span = slice(int(store.fixed_offsets[index]), int(store.fixed_offsets[index + 1]))
                buffer = self.ctx.fixed if buffer is self.ctx.values else self.ctx.fixed_grads
            view = self.ctx.views[key] = buffer[span.start:span.stop].reshape(param.shape)
        return view

    def penalties_of(self, *params):
        """(span, l1, l2) of each trainable regularized weight (the CPU's store regularizes those only)."""
        store = self.ctx.model.store
        return [(store.slice_of(p), p.regularizer.l1, p.regularizer.l2)
                for p in params if p is not None and p.regularizer is not None and p.trainable]


class _Activated(Op):
    """Dense and the convolutions: rows of `units` pre-activations z and activations y."""

    def setup(self, rows_per_sample, units):
        layer = self.layer
        self.rows_per_sample, self.units = rows_per_sample, units
        self.act, self.alpha = layer.act_code, layer.alpha
        self.z, self.y, self.dz = (self.buffer((rows_per_sample, units)) for _ in range(3))
        self.zero_bias = self.ctx.zeros(units)
        self.bias_param = getattr(layer, "bias", None)  # an Activation layer has none
        self.penalties = self.penalties_of(getattr(layer, "kernel", None), self.bias_param)

    def bias(self):
        return self.zero_bias if self.bias_param is None else self.weight(self.bias_param, self.ctx.values)

    def activate(self, m):
        self.ctx.k.bias_act_forward(self.logits(m), self.bias(), self.act, self.alpha, self.outputs(m))

    def deactivate(self, dy, m, fused):
        """dz (the gradient w.r.t. z) from dy, the bias gradient summed; a linear activation's dz is dy itself."""
        rows, code = m * self.rows_per_sample, LINEAR if fused else self.act
        dy = self.reshaped(dy, rows, self.units)
        dz = dy if code == LINEAR else self.view(self.dz, (rows, self.units))
        db = self.zero_grad if self.bias_param is None else self.weight(self.bias_param, self.ctx.grads)
        self.ctx.k.bias_act_backward(dy, self.view(self.z, (rows, self.units)), self.view(self.y, (rows, self.units)),
                                     code, self.alpha, dz, db)
        return dz

    def logits(self, m):
        return self.view(self.z, (m * self.rows_per_sample, self.units))

    def outputs(self, m):
        return self.view(self.y, (m * self.rows_per_sample, self.units))


class DenseOp(_Activated):
    """Dense on rows, or on the last axis of N-d inputs (each step or pixel a row), dense or CSR input."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.din = self.in_shape[-1]
        self.setup(_size(self.in_shape[:-1]), layer.units)
        self.zero_grad = ctx.empty(layer.units, np.float32)
        self.dx = self.buffer(self.in_shape) if self.needs_dx else None

    def forward(self, x, m, training):
        k, w = self.ctx.k, self.weight(self.layer.kernel, self.ctx.values)
        z = self.logits(m)
        if isinstance(x, SparseBatch):
            k.csr_matmul(x.indptr, x.indices, x.values, x.rows, w, z)
        else:
            x = self.reshaped(x, m * self.rows_per_sample, self.din)
            self.ctx.blas.gemm(x, w, z)
        self.x = x
        self.activate(m)
        return self.reshaped(self.outputs(m), (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        dz = self.deactivate(dy, m, fused)
        dw, x = self.weight(self.layer.kernel, self.ctx.grads), self.x
        if isinstance(x, SparseBatch):
            self.ctx.k.csr_t_matmul(x.indptr, x.indices, x.values, x.rows, dz, dw)
        else:
            self.ctx.blas.gemm_tn(x, dz, dw)
        if self.dx is None:
            return None
        dx = self.view(self.dx, (m * self.rows_per_sample, self.din))
        self.ctx.blas.gemm_nt(dz, self.weight(self.layer.kernel, self.ctx.values), dx)
        return self.reshaped(dx, (m,) + self.in_shape)


class ActivationOp(_Activated):
    """The Activation layer: the bias-and-activation kernels with a zero bias over the last axis (softmax: over
    the last axis), its input copied into z for the backward."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.setup(_size(self.in_shape[:-1]), self.in_shape[-1])
        self.zero_grad = ctx.empty(self.units, np.float32)

    def forward(self, x, m, training):
        self.ctx.k.copy_columns(self.reshaped(x, m * self.rows_per_sample, self.units), self.logits(m), 0)
        self.activate(m)
        return self.reshaped(self.outputs(m), (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        return self.reshaped(self.deactivate(dy, m, fused), (m,) + self.in_shape)


class ConvOp(_Activated):
    """Conv1D and Conv2D as im2col + one GEMM over the whole batch (Conv1D as a one-row image)."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.plan = plan = ConvPlan(None, layer._as_2d(layer.input_shape), layer._as_2d(layer.kernel_size),
                                    layer._as_2d(layer.strides), layer._as_2d(layer.dilation_rate),
                                    layer._paddings_2d(), layer.filters, method="columns")
        self.setup(plan.positions, layer.filters)
        self.zero_grad = ctx.empty(layer.filters, np.float32)
        self.cols = self.buffer((plan.positions, plan.depth))
        self.dcols = self.buffer((plan.positions, plan.depth)) if self.needs_dx else None
        self.dx = self.buffer(plan.in_shape) if self.needs_dx else None

    def forward(self, x, m, training):
        plan, k = self.plan, self.ctx.k
        cols = self.view(self.cols, (m * plan.positions, plan.depth))
        k.im2col(self.reshaped(x, (m,) + plan.in_shape), 0, m, plan.geometry, cols)
        self.ctx.blas.gemm(cols, self.reshaped(self.weight(self.layer.kernel, self.ctx.values), plan.depth, self.units),
                           self.view(self.z, (m * plan.positions, self.units)))
        self.activate(m)
        return self.reshaped(self.outputs(m), (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        plan = self.plan
        dz = self.deactivate(dy, m, fused)
        cols = self.view(self.cols, (m * plan.positions, plan.depth))
        self.ctx.blas.gemm_tn(cols, dz, self.reshaped(self.weight(self.layer.kernel, self.ctx.grads), plan.depth,
                                                      self.units))
        if self.dx is None:
            return None
        dcols = self.view(self.dcols, (m * plan.positions, plan.depth))
        kernel = self.reshaped(self.weight(self.layer.kernel, self.ctx.values), plan.depth, self.units)
        self.ctx.blas.gemm_nt(dz, kernel, dcols)
        dx = self.view(self.dx, (m,) + plan.in_shape)
        self.ctx.k.col2im(dcols, 0, m, plan.geometry, dx)
        return self.reshaped(dx, (m,) + self.in_shape)


class PoolOp(Op):
    """Max and average pooling, 1-D and 2-D, and their global forms: the layer's window over (n, h, w, c)."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.window, self.in4, self.out4 = layer.window, layer.in4, layer.out4
        self.y = self.buffer(self.out4)
        self.argmax = None if layer.average else self.buffer(self.out4, np.int32)
        self.dx = self.buffer(self.in4) if self.needs_dx else None
        (ph, pw, sh, sw, _, _), (oh, ow, _) = self.window, self.out4
        # Windows that never overlap: no cell wins twice, so the backward runs an output a thread.
        self.disjoint = (sh >= ph or oh == 1) and (sw >= pw or ow == 1)

    def forward(self, x, m, training):
        x4, y = self.reshaped(x, (m,) + self.in4), self.view(self.y, (m,) + self.out4)
        if self.layer.average:
            self.ctx.k.average_pool2d_forward(x4, *self.window, y)
        else:
            self.ctx.k.max_pool2d_forward(x4, *self.window, y, self.view(self.argmax, (m,) + self.out4))
        return self.reshaped(y, (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        if self.dx is None:
            return None
        dx = self.view(self.dx, (m,) + self.in4)
        if self.layer.average:
            self.ctx.k.average_pool2d_backward(self.reshaped(dy, (m,) + self.out4), *self.window, dx)
        elif self.disjoint:
            self.ctx.k.max_pool_backward_disjoint(self.reshaped(dy, m, _size(self.out4)),
                                                  self.view(self.argmax, (m, _size(self.out4))),
                                                  self.reshaped(dx, m, _size(self.in4)))
        else:  # overlapping windows: a thread an input cell
            self.ctx.k.max_pool2d_backward_gather(self.reshaped(dy, (m,) + self.out4),
                                                  self.view(self.argmax, (m,) + self.out4), *self.window, dx)
        return self.reshaped(dx, (m,) + self.in_shape)


class NormalizationOp(Op):
    """BatchNormalization and LayerNormalization over the last axis (axes): the rows (n·…, width) view, the
    CUDA twins of the CPU kernels; batch statistics in training (the moving ones updated in ctx.fixed), the
    moving ones in inference and for a frozen layer, as Keras 3."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.batch = type(layer).__name__ == "BatchNormalization"
        self.width = layer.channels if self.batch else layer.width
        self.rows_per_sample = _size(self.in_shape) // self.width
        self.y, self.dx = self.buffer(self.in_shape), self.buffer(self.in_shape)
        stats = self.width if self.batch else ctx.batch_size * self.rows_per_sample
        self.mean, self.inv_std = ctx.empty(stats, np.float64), ctx.empty(stats, np.float64)
        self.ones = ctx.cuda.to_device(np.ones(self.width, np.float32))
        self.zeros, self.scratch = ctx.zeros(self.width), [ctx.empty(self.width, np.float32) for _ in range(2)]
        self.penalties = self.penalties_of(layer.gamma, layer.beta)

    def _gamma_beta(self, buffer):
        layer = self.layer
        gamma = self.reshaped(self.weight(layer.gamma, buffer), self.width) if layer.gamma is not None else None
        beta = self.reshaped(self.weight(layer.beta, buffer), self.width) if layer.beta is not None else None
        return gamma, beta

    def forward(self, x, m, training):
        k, layer, rows = self.ctx.k, self.layer, m * self.rows_per_sample
        self.x2 = self.reshaped(x, rows, self.width)
        y2 = self.view(self.y, (rows, self.width))
        gamma, beta = self._gamma_beta(self.ctx.values)
        gamma, beta = self.ones if gamma is None else gamma, self.zeros if beta is None else beta
        self.batch_mode = not self.batch or bool(training and layer.trainable)
        stats = self.width if self.batch else rows
        mean, inv_std = self.mean[:stats], self.inv_std[:stats]
        if not self.batch:
            k.layer_norm_forward(self.x2, gamma, beta, layer.epsilon, mean, inv_std, y2)
        elif self.batch_mode:
            k.batch_norm_forward(self.x2, gamma, beta, layer.momentum, layer.epsilon,
                                 self.weight(layer.moving_mean, self.ctx.values),
                                 self.weight(layer.moving_variance, self.ctx.values), mean, inv_std, y2)
        else:
            k.batch_norm_inference(self.x2, gamma, beta, self.weight(layer.moving_mean, self.ctx.values),
                                   self.weight(layer.moving_variance, self.ctx.values), layer.epsilon, y2)
        return self.reshaped(y2, (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        k, layer, rows = self.ctx.k, self.layer, m * self.rows_per_sample
        dy2, dx2 = self.reshaped(dy, rows, self.width), self.view(self.dx, (rows, self.width))
        gamma, _ = self._gamma_beta(self.ctx.values)
        gamma = self.ones if gamma is None else gamma
        need_dx = self.needs_dx
        if not self.batch_mode:  # a frozen BatchNormalization: constants all through
            k.batch_norm_inference_backward(dy2, gamma, self.weight(layer.moving_variance, self.ctx.values),
                                            layer.epsilon, dx2)
            return self.reshaped(dx2, (m,) + self.in_shape) if need_dx else None
        dgamma, dbeta = self._gamma_beta(self.ctx.grads)
        dgamma, dbeta = self.scratch[0] if dgamma is None else dgamma, self.scratch[1] if dbeta is None else dbeta
        stats = self.width if self.batch else rows
        run = k.batch_norm_backward if self.batch else k.layer_norm_backward
        run(dy2, self.x2, gamma, self.mean[:stats], self.inv_std[:stats], dgamma, dbeta, need_dx, dx2)
        return self.reshaped(dx2, (m,) + self.in_shape) if need_dx else None


class FlattenOp(Op):
    """Flatten and Reshape: a new view of the same rows."""

    def forward(self, x, m, training):
        return self.reshaped(x, (m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        return self.reshaped(dy, (m,) + self.in_shape)


MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


def op_for(layer):
    """The op class that runs `layer` on the device, or None when none does yet."""
    from nnctl.nn.cudaops_dropout import DropoutOp, SpatialDropoutOp
    from nnctl.nn.cudaops_recurrent import BidirectionalOp, RecurrentOp
    from nnctl.nn.functional import NestedModel

    if isinstance(layer, NestedModel):
        return import_module("nnctl.nn.cudaops_nested").NestedOp
    if isinstance(layer, Embedding):
        return import_module("nnctl.nn.cudaops_embedding").EmbeddingOp if layer.embeddings_regularizer is None else None
    if isinstance(layer, Dense):
        return DenseOp
    if isinstance(layer, BaseConv):
        return ConvOp
    if isinstance(layer, GlobalAveragePooling1D):
        from nnctl.nn.cudaops_masks import MaskedMeanOp

        return MaskedMeanOp
    if isinstance(layer, _Pooled):
        return PoolOp
    if isinstance(layer, Masking):
        from nnctl.nn.cudaops_masks import MaskingOp

        return MaskingOp
    if isinstance(layer, (SimpleRNN, LSTM, GRU)):
        return RecurrentOp
    if isinstance(layer, Bidirectional):
        return BidirectionalOp
    if isinstance(layer, (BatchNormalization, LayerNormalization)):
        return NormalizationOp if not layer.view.moves else None  # the normalized axes last: a free reshape
    if isinstance(layer, (Flatten, Reshape)):
        return FlattenOp
    if isinstance(layer, Dropout):
        return DropoutOp
    if isinstance(layer, SpatialDropout):
        return SpatialDropoutOp
    if isinstance(layer, Activation):
        return ActivationOp
    if type(layer).__name__ in (*MERGES, "Dot"):
        return import_module("nnctl.nn.cudaops_merge").merge_op(layer)
    return None
