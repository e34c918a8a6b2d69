"""The compiled fast path: a plain stack of Dense layers trains many steps in one Numba call.

It calls the very kernels the layer-by-layer path calls, in the same order, so both give the same bytes;
what it saves is Python's per-step overhead (the book's Boston K-fold runs ~600,000 steps of batch 1).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnctl.engine import settings
from nnctl.engine.settings import KERNEL
from nnctl.engine.cpu.dense import LINEAR, bias_act_backward, bias_act_forward, matmul, matmul_nt, matmul_tn, take_rows
from nnctl.engine.cpu.losses import loss_forward_backward
from nnctl.engine.cpu.optim import optimizer_step, regularize
from nnctl.engine.cpu.sparse import csr_matmul, csr_t_matmul
from nnctl.engine.csr import CSRMatrix
from nnctl.nn.layers import Dense

# Columns of the integer layer table.
IN, UNITS, ACT, W_OFF, B_OFF = range(5)
# Columns of the float layer table: activation alpha, then L1/L2 of the kernel and of the bias.
ALPHA, K_L1, K_L2, B_L1, B_L2 = range(5)


@njit(**KERNEL)
def _copy_rows(src, dst, first):
    """dst[first + b, :] = src[b, :], as element loops (slice assignment compiles far slower in Numba)."""
    for b in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[first + b, j] = src[b, j]


@njit(**KERNEL)
def _forward(x, indptr, indices, values, sparse, rows, ilayers, flayers, params, zero_bias, xbuf, zbuf, ybuf):
    """Forward one batch through every layer; z/y of layer l live at zbuf/ybuf[l, :m*units]."""
    m = rows.shape[0]
    for layer in range(ilayers.shape[0]):
        din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
        w = params[w_off:w_off + din * units].reshape((din, units))
        z = zbuf[layer, :m * units].reshape((m, units))
        y = ybuf[layer, :m * units].reshape((m, units))
        if layer == 0:
            if sparse:
                csr_matmul(indptr, indices, values, rows, w, z)
            else:
                xb = xbuf[:m * din].reshape((m, din))
                take_rows(x, rows, xb)
                matmul(xb, w, z)
        else:
            prev_units = ilayers[layer - 1, UNITS]
            matmul(ybuf[layer - 1, :m * prev_units].reshape((m, prev_units)), w, z)
        bias = params[b_off:b_off + units] if b_off >= 0 else zero_bias[:units]
        bias_act_forward(z, bias, ilayers[layer, ACT], flayers[layer, ALPHA], y)


@njit(**KERNEL)
def train_steps(x, indptr, indices, values, sparse, target, labels, sparse_labels, weight, order, first, last, batch_size,
                ilayers, flayers, loss_code, delta, fused, params, grads, offsets, opt_code, hp, iteration,
                slot1, slot2, slot3, clip_mode, clip, zero_bias, xbuf, zbuf, ybuf, gbuf, dbuf, tbuf, lbuf, wbuf,
                outputs, step_losses):
    """Steps first..last-1 of an epoch whose sample order is `order`; returns the new iteration count.

    Per step: gather the batch, forward, fused loss, backward (no input gradient for layer 0),
    regularizers, one optimizer_step. Outputs of the last layer go to outputs[batch rows of the epoch].
    """
    n = order.shape[0]
    n_layers = ilayers.shape[0]
    last_layer = n_layers - 1
    out_units = ilayers[last_layer, UNITS]
    for step in range(first, last):
        b0 = step * batch_size
        b1 = min(n, b0 + batch_size)
        m = b1 - b0
        rows = order[b0:b1]
        _forward(x, indptr, indices, values, sparse, rows, ilayers, flayers, params, zero_bias, xbuf, zbuf, ybuf)
        z_out = zbuf[last_layer, :m * out_units].reshape((m, out_units))
        y_out = ybuf[last_layer, :m * out_units].reshape((m, out_units))
        if not sparse_labels:
            take_rows(target, rows, tbuf[:m])
        for b in range(m):
            wbuf[b] = weight[rows[b]]
            if sparse_labels:
                lbuf[b] = labels[rows[b]]
        dy = gbuf[0, :m * out_units].reshape((m, out_units))
        loss = loss_forward_backward(loss_code, delta, z_out if fused else y_out, tbuf[:m], lbuf[:m], wbuf[:m], dy)
        current = 0  # which of gbuf's two rows holds dy; the other receives dz
        for layer in range(last_layer, -1, -1):
            din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
            dy = gbuf[current, :m * units].reshape((m, units))
            dz = gbuf[1 - current, :m * units].reshape((m, units))
            act = LINEAR if (layer == last_layer and fused) else ilayers[layer, ACT]
            db = grads[b_off:b_off + units] if b_off >= 0 else dbuf[:units]
            bias_act_backward(dy, zbuf[layer, :m * units].reshape((m, units)),
                              ybuf[layer, :m * units].reshape((m, units)), act, flayers[layer, ALPHA], dz, db)
            w = params[w_off:w_off + din * units].reshape((din, units))
            dw = grads[w_off:w_off + din * units].reshape((din, units))
            if layer == 0:
                if sparse:
                    csr_t_matmul(indptr, indices, values, rows, dz, dw)
                else:
                    matmul_tn(xbuf[:m * din].reshape((m, din)), dz, dw)
            else:
                matmul_tn(ybuf[layer - 1, :m * din].reshape((m, din)), dz, dw)
                matmul_nt(dz, w, gbuf[current, :m * din].reshape((m, din)))
        # Regularizers in parameter order (kernel, then bias, layer by layer), as ParameterStore does.
        for layer in range(n_layers):
            din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
            if flayers[layer, K_L1] != 0.0 or flayers[layer, K_L2] != 0.0:
                loss += regularize(params[w_off:w_off + din * units], grads[w_off:w_off + din * units],
                                   flayers[layer, K_L1], flayers[layer, K_L2])
            if b_off >= 0 and (flayers[layer, B_L1] != 0.0 or flayers[layer, B_L2] != 0.0):
                loss += regularize(params[b_off:b_off + units], grads[b_off:b_off + units],
                                   flayers[layer, B_L1], flayers[layer, B_L2])
        optimizer_step(opt_code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip)
        iteration += 1
        _copy_rows(y_out, outputs, b0)
        step_losses[step] = loss
    return iteration


@njit(**KERNEL)
def predict_rows(x, indptr, indices, values, sparse, count, batch_size, ilayers, flayers, params, zero_bias,
                 xbuf, zbuf, ybuf, logits, outputs):
    """Inference over rows 0..count-1 in batches; writes the last layer's z (logits) and y (outputs)."""
    last_layer = ilayers.shape[0] - 1
    units = ilayers[last_layer, UNITS]
    rows_all = np.arange(count)
    for b0 in range(0, count, batch_size):
        b1 = min(count, b0 + batch_size)
        m = b1 - b0
        _forward(x, indptr, indices, values, sparse, rows_all[b0:b1], ilayers, flayers, params, zero_bias,
                 xbuf, zbuf, ybuf)
        _copy_rows(zbuf[last_layer, :m * units].reshape((m, units)), logits, b0)
        _copy_rows(ybuf[last_layer, :m * units].reshape((m, units)), outputs, b0)


def eligible(model, batch_size: int, sparse: bool) -> bool:
    """True when every layer is Dense and small enough that the layered path would not call BLAS either
    (so both paths run identical kernels); big layers are faster through BLAS, layer by layer."""
    layers = model.layers
    if model.dtype != np.float32 or not layers or not all(isinstance(layer, Dense) for layer in layers):
        return False
    return all(len(layer.input_shape) == 1 and batch_size * layer.input_shape[0] * layer.units < settings.SMALL_GEMM_MACS
               for layer in layers[1:] + ([] if sparse else layers[:1]))


class FastPath:
    """The tables and scratch buffers of one model at one batch size, and the two entry points."""

    def __init__(self, model, batch_size: int, sparse: bool):
        """`sparse`: whether the inputs this instance will see are CSR (sizes the input buffer)."""
        self.model, self.batch_size, self.sparse = model, batch_size, sparse
        store = model.store
        layers = model.layers
        self.ilayers = np.zeros((len(layers), 5), dtype=np.int64)
        self.flayers = np.zeros((len(layers), 5), dtype=np.float64)
        for i, layer in enumerate(layers):
            w = store.slice_of(layer.kernel)
            b = store.slice_of(layer.bias).start if layer.bias is not None else -1
            self.ilayers[i] = (layer.input_shape[0], layer.units, layer.act_code, w.start, b)
            reg_k, reg_b = layer.kernel.regularizer, layer.bias.regularizer if layer.bias is not None else None
            self.flayers[i] = (layer.alpha, reg_k.l1 if reg_k else 0, reg_k.l2 if reg_k else 0,
                               reg_b.l1 if reg_b else 0, reg_b.l2 if reg_b else 0)
        widest = max(int(self.ilayers[:, UNITS].max()), 1)
        first_in = 0 if sparse else int(self.ilayers[0, IN])
        self.zero_bias = np.zeros(widest, np.float32)
        self.dbuf = np.zeros(widest, np.float32)
        self.xbuf = np.zeros(max(batch_size * first_in, widest), np.float32)
        self.zbuf = np.zeros((len(layers), batch_size * widest), np.float32)
        self.ybuf = np.zeros_like(self.zbuf)
        widest_in = max(widest, int(self.ilayers[1:, IN].max()) if len(layers) > 1 else 0)
        self.gbuf = np.zeros((2, batch_size * widest_in), np.float32)
        # Per-batch gathers of targets, class ids and sample weights.
        self.tbuf = np.zeros((batch_size, int(self.ilayers[-1, UNITS])), np.float32)
        self.lbuf = np.zeros(batch_size, np.int64)
        self.wbuf = np.zeros(batch_size, np.float32)

    def _x(self, x):
        assert isinstance(x, CSRMatrix) == self.sparse, "the input kind differs from the one buffers were sized for"
        if self.sparse:
            return np.zeros((1, 1), np.float32), x.indptr, x.indices, x.values, True
        return x, np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, np.float32), False

    def train(self, data, order, first, last, outputs, step_losses) -> None:
        model, opt = self.model, self.model.optimizer
        opt.iterations = train_steps(
            *self._x(data.x), data.target, data.labels, model.loss.sparse, data.weight, order, first, last, self.batch_size,
            self.ilayers, self.flayers, model.loss_code, model.loss.delta, model.loss_fused,
            model.store.values, model.store.grads, model.store.offsets, opt.code, opt.hyperparameters(),
            opt.iterations, *opt.slots, opt.clip_mode, opt.clip, self.zero_bias, self.xbuf, self.zbuf,
            self.ybuf, self.gbuf, self.dbuf, self.tbuf, self.lbuf, self.wbuf,
            outputs, step_losses)

    def predict(self, x, count, logits, outputs) -> None:
        predict_rows(*self._x(x), count, self.batch_size, self.ilayers, self.flayers, self.model.store.values,
                     self.zero_bias, self.xbuf, self.zbuf, self.ybuf, logits, outputs)
