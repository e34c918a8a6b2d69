"""The fast path's epoch loop, as source that nnctl.nn.fastpath writes out once per kind of model.

Never imported by itself: fastpath appends the definitions of the names below that this file leaves open
(the model's own activation, loss, optimizer, input, regularizer and clipping kernels), so Numba compiles only those.
"""
# ruff: noqa: F821 — act_forward, act_backward, input_forward, input_weight_grad, add_penalties, clip_kernel,
# loss_kernel and optimizer_kernel are defined by the generated part (fastpath._kernel_source).

from numba import njit

from nnctl.engine.cpu.dense import LINEAR, matmul, matmul_nt, matmul_tn, take_rows
from nnctl.engine.cpu.optim import regularize
from nnctl.engine.cpu.sparse import csr_matmul, csr_t_matmul
from nnctl.engine.settings import KERNEL
from nnctl.nn.fastpath import (
    ACT,
    ALPHA,
    B_L1,
    B_L2,
    B_OFF,
    IN,
    K_L1,
    K_L2,
    UNITS,
    W_OFF,
)


@njit(**KERNEL)
def _matrix(buf, start, rows, cols):
    """buf[start:start + rows·cols] as a (rows, cols) matrix. One small function called from a dozen places
    compiles faster than a dozen inlined slice-and-reshapes."""
    return buf[start:start + rows * cols].reshape((rows, cols))


# The helpers below are inlined into run_steps: Numba would otherwise compile each one separately and then
# link and optimize its code again inside every caller.
@njit(inline="always", **KERNEL)
def _copy_rows(src, dst, first):
    """dst[first + b, :] = src[b, :], as element loops (slice assignment compiles far slower in Numba)."""
    for b in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[first + b, j] = src[b, j]


@njit(inline="always", **KERNEL)
def _forward(x, indptr, indices, values, rows, ilayers, flayers, params, zero_bias, xbuf, zbuf, ybuf):
    """Forward one batch through every layer; z/y of layer l live at zbuf/ybuf[l, :m*units]."""
    m = rows.shape[0]
    for layer in range(ilayers.shape[0]):
        din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
        w = _matrix(params, w_off, din, units)
        z = _matrix(zbuf[layer], 0, m, units)
        y = _matrix(ybuf[layer], 0, m, units)
        if layer == 0:
            input_forward(x, indptr, indices, values, rows, w, xbuf, z)
        else:
            prev_units = ilayers[layer - 1, UNITS]
            matmul(_matrix(ybuf[layer - 1], 0, m, prev_units), w, z)
        bias = params[b_off:b_off + units] if b_off >= 0 else zero_bias[:units]
        act_forward(ilayers[layer, ACT], z, bias, flayers[layer, ALPHA], y)


@njit(**KERNEL)
def run_steps(train, x, indptr, indices, values, order, first, last, batch_size, ilayers, flayers, params,
              zero_bias, xbuf, zbuf, ybuf, logits, outputs, target, labels, sparse_labels, weight, delta, fused, grads,
              offsets, hp, iteration, slot1, slot2, slot3, clip_mode, clip, gbuf, dbuf, tbuf, lbuf, wbuf, step_losses):
    """Steps first..last-1 over the rows of x in `order`, batch_size at a time; returns the iteration count.

    train: forward, fused loss, backward (no input gradient for layer 0), regularizers and one optimizer step
    per batch; the last layer's outputs go to outputs[positions of the batch in `order`]. Otherwise (inference)
    forward only, writing the last layer's z to logits as well; the training arguments are then unused.
    Training and inference share one function so that Numba compiles the forward pass once.
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
        _forward(x, indptr, indices, values, rows, ilayers, flayers, params, zero_bias, xbuf, zbuf, ybuf)
        z_out = _matrix(zbuf[last_layer], 0, m, out_units)
        y_out = _matrix(ybuf[last_layer], 0, m, out_units)
        _copy_rows(y_out, outputs, b0)
        if not train:
            _copy_rows(z_out, logits, b0)
            continue
        if not sparse_labels:
            take_rows(target, rows, tbuf[:m])
        for b in range(m):
            wbuf[b] = weight[rows[b]]
            if sparse_labels:
                lbuf[b] = labels[rows[b]]
        dy = _matrix(gbuf[0], 0, m, out_units)
        loss = loss_kernel(delta, z_out if fused else y_out, tbuf[:m], lbuf[:m], wbuf[:m], dy)
        current = 0  # which of gbuf's two rows holds dy; the other receives dz
        for layer in range(last_layer, -1, -1):
            din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
            dy = _matrix(gbuf[current], 0, m, units)
            dz = _matrix(gbuf[1 - current], 0, m, units)
            act = LINEAR if (layer == last_layer and fused) else ilayers[layer, ACT]
            db = grads[b_off:b_off + units] if b_off >= 0 else dbuf[:units]
            act_backward(act, dy, _matrix(zbuf[layer], 0, m, units),
                         _matrix(ybuf[layer], 0, m, units), flayers[layer, ALPHA], dz, db)
            w = _matrix(params, w_off, din, units)
            dw = _matrix(grads, w_off, din, units)
            if layer == 0:
                input_weight_grad(indptr, indices, values, rows, xbuf, dz, dw)
            else:
                matmul_tn(_matrix(ybuf[layer - 1], 0, m, din), dz, dw)
                matmul_nt(dz, w, _matrix(gbuf[current], 0, m, din))
        loss += add_penalties(ilayers, flayers, params, grads)
        clip_kernel(offsets, grads, clip_mode, clip)
        optimizer_kernel(hp, iteration, offsets, params, grads, slot1, slot2, slot3)
        iteration += 1
        step_losses[step] = loss
    return iteration


@njit(inline="always", **KERNEL)
def _penalties(ilayers, flayers, params, grads):
    """The regularizers' gradients, added in parameter order (kernel, then bias, layer by layer) as
    ParameterStore does; returns their total penalty."""
    total = 0.0
    for layer in range(ilayers.shape[0]):
        din, units, w_off, b_off = ilayers[layer, IN], ilayers[layer, UNITS], ilayers[layer, W_OFF], ilayers[layer, B_OFF]
        if flayers[layer, K_L1] != 0.0 or flayers[layer, K_L2] != 0.0:
            total += regularize(params[w_off:w_off + din * units], grads[w_off:w_off + din * units],
                                flayers[layer, K_L1], flayers[layer, K_L2])
        if b_off >= 0 and (flayers[layer, B_L1] != 0.0 or flayers[layer, B_L2] != 0.0):
            total += regularize(params[b_off:b_off + units], grads[b_off:b_off + units],
                                flayers[layer, B_L1], flayers[layer, B_L2])
    return total


@njit(inline="always", **KERNEL)
def _no_penalties(ilayers, flayers, params, grads):
    return 0.0


@njit(inline="always", **KERNEL)
def _no_clip(offsets, grads, clip_mode, clip):
    pass


# The first layer's input: dense rows gathered into xbuf (m, din), or CSR rows multiplied where they lie.
@njit(inline="always", **KERNEL)
def _dense_input_forward(x, indptr, indices, values, rows, w, xbuf, z):
    xb = _matrix(xbuf, 0, rows.shape[0], w.shape[0])
    take_rows(x, rows, xb)
    matmul(xb, w, z)


@njit(inline="always", **KERNEL)
def _dense_input_weight_grad(indptr, indices, values, rows, xbuf, dz, dw):
    matmul_tn(_matrix(xbuf, 0, rows.shape[0], dw.shape[0]), dz, dw)


@njit(inline="always", **KERNEL)
def _csr_input_forward(x, indptr, indices, values, rows, w, xbuf, z):
    csr_matmul(indptr, indices, values, rows, w, z)


@njit(inline="always", **KERNEL)
def _csr_input_weight_grad(indptr, indices, values, rows, xbuf, dz, dw):
    csr_t_matmul(indptr, indices, values, rows, dz, dw)
