"""The GPU's own: a Dense model's training steps (or its inference batches) in **one launch** — the batch's rows
gathered, each layer's GEMM and bias + activation, the loss, every layer's backward and the optimizer's update,
step after step, by threads that share each phase's elements and meet at a barrier between phases: one block's
`syncthreads` (`_dense_steps`), or a cooperative grid's barrier across one block a multiprocessor
(`_dense_steps_grid`, for models too big for one block); nn/cudafused.py says which models qualify.

A small model's step is a dozen to a couple of dozen launches of a few microseconds of GPU work each (the Boston
MLP: 23 a step), so its time is the launches' Python and driver overhead, not arithmetic; here an epoch is one
launch. Each phase runs the very cells the separate kernels run (dense.py's `product`, `bias_act_cell`,
`bias_softmax_row`, `softmax_backward_row`, `column_sum`; losses.py's `weighted_sample`, `mean_in_order`;
optim.py's `update_element`), on the same buffers, in the same order: the bytes of the layer-by-layer path where
it runs its GEMMs as those Numba kernels (every GEMM under the simulator, the small ones on a GPU); where it gives
a GEMM to cuBLAS, the same to float32 rounding.

Arrays per layer come as tuples (indexed by the layer inside the kernel): `kernels`, `biases` (a zero row for a
layer without one), their gradients `dkernels`, `dbiases`, the (batch, units) buffers `zs`, `ys`, `dzs`, and the
(batch, inputs) `dxs` (layer 0's unused); `acts` and `alphas` are each layer's activation code and alpha. Where a
Dropout follows a layer, `outs` holds its (batch, units) output, `rates` its rate and `keys` its key (else the
layer's `ys`, 0 and 0): in training, the layer above reads `outs`, and a layer's dx is its dz · Wᵀ times the mask of
the dropout below, drawn again from its counter-based state (dropout.py) rather than stored; step s's draw is
numbered `counter0 + s`, the optimizer's step count, as the Dropout op numbers it. `order` holds the epoch's row
numbers (step s reads order[s·batch : (s + 1)·batch]); `step_sizes[s − first]` is the optimizer's step size at
step s.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda import dense, dropout, losses, optim
from nnctl.engine.cuda.dense import LINEAR, SOFTMAX
from nnctl.engine.cuda.launch import SIMULATED, on, wide

GPU_THREADS, GPU_GRID_THREADS = 512, 256
THREADS = 32 if SIMULATED else GPU_THREADS  # the one block's threads
GRID_THREADS = 32 if SIMULATED else GPU_GRID_THREADS  # a grid-wide launch's threads a block (one a multiprocessor)


# The phases of a step. Each runs on threads t, t + threads, … (a block's, or the whole grid's) and leaves the
# barrier after it to its kernel.
@cuda.jit(device=True)
def _gather(training, sparse, x, order, b0, m, xbuf, target_data, labels_data, weight_data, target, labels, weight,
            t, threads):
    """The batch's input rows, and in training its targets (or labels) and weights (take_rows's copies)."""
    features = xbuf.shape[1]
    for e in range(t, m * features, threads):
        i = e // features
        xbuf[i, e - i * features] = x[order[b0 + i], e - i * features]
    if training:
        width = target.shape[1]
        for i in range(t, m, threads):
            weight[i] = weight_data[order[b0 + i], 0]
            if sparse:
                labels[i] = labels_data[order[b0 + i], 0]
        if not sparse:
            for e in range(t, m * width, threads):
                i = e // width
                target[i, e - i * width] = target_data[order[b0 + i], e - i * width]


@cuda.jit(device=True)
def _draw(keys, rates, counter, layer):
    """The draw of the dropout after `layer` at optimizer step `counter` (dropout.py): its state, and the rate and
    scale as float32, as dropout_counter_forward passes them."""
    rate = rates[layer]
    return dropout.state_at(keys[layer], counter), np.float32(rate), np.float32(1.0 / (1.0 - rate))


@cuda.jit(device=True)
def _product(training, m, layer, xbuf, kernels, zs, ys, outs, rates, t, threads):
    """z = (the layer's input: the batch's rows, the layer below's output, or in training its dropout's) · W."""
    source = xbuf if layer == 0 else outs[layer - 1] if training and rates[layer - 1] > 0.0 else ys[layer - 1]
    z, w = zs[layer], kernels[layer]
    units = z.shape[1]
    for e in range(t, m * units, threads):
        i = e // units
        z[i, e - i * units] = dense.product(source, w, False, False, w.shape[0], i, e - i * units)


@cuda.jit(device=True)
def _activation(training, m, layer, biases, zs, ys, acts, alphas, outs, rates, keys, counter, t, threads):
    """z += bias; y = act(z); and in training, where a dropout follows the layer, its output y · mask (element e
    of the (m, units) rows takes element e of the draw, as the Dropout op's flat rows)."""
    z, y, bias, code, out = zs[layer], ys[layer], biases[layer], acts[layer], outs[layer]
    units = z.shape[1]
    dropping = training and rates[layer] > 0.0
    state, rate, scale = _draw(keys, rates, counter, layer)
    if code == SOFTMAX:
        for i in range(t, m, threads):
            dense.bias_softmax_row(z, bias, y, i)
            if dropping:
                for j in range(units):
                    out[i, j] = y[i, j] * dropout.multiplier(state, i * units + j, rate, scale)
    else:
        for e in range(t, m * units, threads):
            i = e // units
            dense.bias_act_cell(z, bias, code, alphas[layer], y, i, e - i * units)
            if dropping:
                out[i, e - i * units] = y[i, e - i * units] * dropout.multiplier(state, e, rate, scale)


@cuda.jit(device=True)
def _head(training, m, y, z, out, logits, row0, t, threads):
    """The head's outputs (and, inferring, its logits) into rows row0… of out (logits)."""
    units = y.shape[1]
    for e in range(t, m * units, threads):
        i = e // units
        out[row0 + i, e - i * units] = y[i, e - i * units]
        if not training:
            logits[row0 + i, e - i * units] = z[i, e - i * units]


@cuda.jit(device=True)
def _losses(m, loss_code, delta, pred, target, labels, weight, grad, sample_losses, t, threads):
    for i in range(t, m, threads):
        sample_losses[i] = losses.weighted_sample(loss_code, delta, pred, target, labels, weight, grad, m, i)


@cuda.jit(device=True)
def _deactivation(m, layer, grad, zs, ys, dzs, dxs, acts, alphas, fused, t, threads):
    """dz = dy · act'(z), dy being the loss's gradient (the top layer) or the layer above's dx."""
    last = len(acts) - 1
    z, y, dz = zs[layer], ys[layer], dzs[layer]
    dy = grad if layer == last else dxs[layer + 1]
    code = LINEAR if (layer == last and fused) else acts[layer]
    units, alpha = z.shape[1], alphas[layer]
    if code == SOFTMAX:
        for i in range(t, m, threads):
            dense.softmax_backward_row(dy, y, dz, i)
    else:
        for e in range(t, m * units, threads):
            i = e // units
            j = e - i * units
            dz[i, j] = dense._grad(code, dy[i, j], z[i, j], y[i, j], alpha)


@cuda.jit(device=True)
def _gradients(m, layer, xbuf, kernels, dkernels, dbiases, ys, dzs, dxs, outs, rates, keys, counter, t, threads):
    """db = column sums of dz, dW = inputᵀ · dz, and (above the first layer) dx = dz · Wᵀ, times the mask of a
    dropout below (its backward; the layer below reads dx as its output's gradient)."""
    dz, db, dw = dzs[layer], dbiases[layer], dkernels[layer]
    units = dz.shape[1]
    for j in range(t, units, threads):
        db[j] = dense.column_sum(dz, m, j)
    source = xbuf if layer == 0 else outs[layer - 1] if rates[layer - 1] > 0.0 else ys[layer - 1]
    for e in range(t, dw.shape[0] * units, threads):
        r = e // units
        dw[r, e - r * units] = dense.product(source, dz, True, False, m, r, e - r * units)
    if layer > 0:
        dx, w = dxs[layer], kernels[layer]
        inputs = w.shape[0]
        dropped = rates[layer - 1] > 0.0
        state, rate, scale = _draw(keys, rates, counter, layer - 1)
        for e in range(t, m * inputs, threads):
            i = e // inputs
            value = np.float32(dense.product(dz, w, False, True, units, i, e - i * inputs))
            dx[i, e - i * inputs] = value * dropout.multiplier(state, e, rate, scale) if dropped else value


@cuda.jit(device=True)
def _update(opt_code, lr, keep, size, a, b, c, d, values, grads, s1, s2, s3, t, threads):
    for p in range(t, values.shape[0], threads):
        optim.update_element(opt_code, lr, keep, size, a, b, c, d, values, grads, s1, s2, s3, p)


# The two kernels: the same phases in the same order, one block meeting at syncthreads, or every block of a
# cooperative grid meeting at the grid's barrier.
@wide(GPU_THREADS)
def _dense_steps(training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs, ys, dzs,
                 dxs, acts, alphas, outs, rates, keys, counter0, loss_code, delta, fused, sparse, target_data,
                 labels_data, weight_data, target, labels, weight, grad, sample_losses, step_losses, out, logits,
                 out_first, opt_code, lr, keep, step_sizes, a, b, c, d, values, grads, s1, s2, s3):
    t, threads, top = cuda.threadIdx.x, cuda.blockDim.x, len(acts) - 1
    for step in range(first, last):
        b0 = step * batch
        m = min(order.shape[0], b0 + batch) - b0
        _gather(training, sparse, x, order, b0, m, xbuf, target_data, labels_data, weight_data, target, labels,
                weight, t, threads)
        cuda.syncthreads()
        for layer in range(top + 1):
            _product(training, m, layer, xbuf, kernels, zs, ys, outs, rates, t, threads)
            cuda.syncthreads()
            _activation(training, m, layer, biases, zs, ys, acts, alphas, outs, rates, keys, counter0 + step, t,
                        threads)
            cuda.syncthreads()
        _head(training, m, ys[top], zs[top], out, logits, b0 - out_first, t, threads)
        if training:
            _losses(m, loss_code, delta, zs[top] if fused else ys[top], target, labels, weight, grad,
                    sample_losses, t, threads)
            cuda.syncthreads()
            if t == 0:
                step_losses[step] = losses.mean_in_order(sample_losses, m)
            for layer in range(top, -1, -1):
                _deactivation(m, layer, grad, zs, ys, dzs, dxs, acts, alphas, fused, t, threads)
                cuda.syncthreads()
                _gradients(m, layer, xbuf, kernels, dkernels, dbiases, ys, dzs, dxs, outs, rates, keys,
                           counter0 + step, t, threads)
                cuda.syncthreads()
            _update(opt_code, lr, keep, step_sizes[step - first], a, b, c, d, values, grads, s1, s2, s3, t, threads)
            cuda.syncthreads()


@wide(GPU_GRID_THREADS)
def _dense_steps_grid(training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs, ys, dzs,
                      dxs, acts, alphas, outs, rates, keys, counter0, loss_code, delta, fused, sparse, target_data,
                      labels_data, weight_data, target, labels, weight, grad, sample_losses, step_losses, out, logits,
                      out_first, opt_code, lr, keep, step_sizes, a, b, c, d, values, grads, s1, s2, s3):
    grid = cuda.cg.this_grid()
    t, threads, top = cuda.grid(1), cuda.gridsize(1), len(acts) - 1
    for step in range(first, last):
        b0 = step * batch
        m = min(order.shape[0], b0 + batch) - b0
        _gather(training, sparse, x, order, b0, m, xbuf, target_data, labels_data, weight_data, target, labels,
                weight, t, threads)
        grid.sync()
        for layer in range(top + 1):
            _product(training, m, layer, xbuf, kernels, zs, ys, outs, rates, t, threads)
            grid.sync()
            _activation(training, m, layer, biases, zs, ys, acts, alphas, outs, rates, keys, counter0 + step, t,
                        threads)
            grid.sync()
        _head(training, m, ys[top], zs[top], out, logits, b0 - out_first, t, threads)
        if training:
            _losses(m, loss_code, delta, zs[top] if fused else ys[top], target, labels, weight, grad,
                    sample_losses, t, threads)
            grid.sync()
            if t == 0:
                step_losses[step] = losses.mean_in_order(sample_losses, m)
            for layer in range(top, -1, -1):
                _deactivation(m, layer, grad, zs, ys, dzs, dxs, acts, alphas, fused, t, threads)
                grid.sync()
                _gradients(m, layer, xbuf, kernels, dkernels, dbiases, ys, dzs, dxs, outs, rates, keys,
                           counter0 + step, t, threads)
                grid.sync()
            _update(opt_code, lr, keep, step_sizes[step - first], a, b, c, d, values, grads, s1, s2, s3, t, threads)
            grid.sync()


def dense_steps(grid_blocks, training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs,
                ys, dzs, dxs, acts, alphas, outs, rates, keys, counter0, loss_code, delta, fused, sparse, target_data,
                labels_data, weight_data, target, labels, weight, grad, sample_losses, step_losses, out, logits,
                out_first, opt_code, lr, keep, step_sizes, a, b, c, d, values, grads, s1, s2, s3):
    """Steps first..last − 1 of a Dense stack (training), or its inference batches, in one launch: of one block
    (grid_blocks 0), or of a cooperative grid of `grid_blocks` blocks (the module's docstring)."""
    args = (training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs, ys, dzs, dxs, acts,
            alphas, outs, rates, keys, counter0, loss_code, delta, fused, sparse, target_data, labels_data,
            weight_data, target, labels, weight, grad, sample_losses, step_losses, out, logits, out_first, opt_code,
            lr, keep, step_sizes, a, b, c, d, values, grads, s1, s2, s3)
    if grid_blocks:
        _dense_steps_grid[on(grid_blocks, GRID_THREADS)](*args)
    else:
        _dense_steps[on(1, THREADS)](*args)


KERNELS = ("dense_steps",)
