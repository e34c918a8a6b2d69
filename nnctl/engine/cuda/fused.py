"""The GPU's own: a small Dense model's training steps (or its inference batches) in **one launch** — the batch's
rows gathered, each layer's GEMM and bias + activation, the loss, every layer's backward and the optimizer's update,
step after step, by one block whose threads share each phase's elements and meet at a `syncthreads` between
phases (nn/cudafused.py says which models qualify).

A small model's step is a couple of dozen launches of a few microseconds of GPU work each (the Boston MLP: 23 a
step), so its time is the launches' Python and driver overhead, not arithmetic; here an epoch is one launch. Each
phase runs the very cells the separate kernels run (dense.py's `product`, `bias_act_cell`, `bias_softmax_row`,
`softmax_backward_row`, `column_sum`; losses.py's `weighted_sample`, `mean_in_order`; optim.py's
`update_element`), on the same buffers, in the same order, so the bytes are the layer-by-layer path's — which
uses those kernels only where a GEMM is too small for cuBLAS, the only models that come here.

Arrays per layer come as tuples (indexed by the layer inside the kernel): `kernels`, `biases` (a zero row for a
layer without one), their gradients `dkernels`, `dbiases`, the (batch, units) buffers `zs`, `ys`, `dzs`, and the
(batch, inputs) `dxs` (layer 0's unused); `acts` and `alphas` are each layer's activation code and alpha. `order`
holds the epoch's row numbers (step s reads order[s·batch : (s + 1)·batch]); `step_sizes[s − first]` is the
optimizer's step size at step s.
"""

from __future__ import annotations

from numba import cuda

from nnctl.engine.cuda import dense, losses, optim
from nnctl.engine.cuda.dense import LINEAR, SOFTMAX
from nnctl.engine.cuda.launch import KERNEL, SIMULATED

THREADS = 32 if SIMULATED else 512  # the one block's threads


@cuda.jit(device=True)
def _forward(m, xbuf, kernels, biases, zs, ys, acts, alphas, t, threads):
    for layer in range(len(acts)):
        source = xbuf if layer == 0 else ys[layer - 1]
        z, y, w, bias = zs[layer], ys[layer], kernels[layer], biases[layer]
        units, code, alpha = z.shape[1], acts[layer], alphas[layer]
        for e in range(t, m * units, threads):
            i = e // units
            z[i, e - i * units] = dense.product(source, w, False, False, w.shape[0], i, e - i * units)
        cuda.syncthreads()
        if code == SOFTMAX:
            for i in range(t, m, threads):
                dense.bias_softmax_row(z, bias, y, i)
        else:
            for e in range(t, m * units, threads):
                i = e // units
                dense.bias_act_cell(z, bias, code, alpha, y, i, e - i * units)
        cuda.syncthreads()


@cuda.jit(device=True)
def _backward(m, xbuf, kernels, dkernels, dbiases, zs, ys, dzs, dxs, grad, acts, alphas, fused, t, threads):
    last = len(acts) - 1
    for layer in range(last, -1, -1):
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
        cuda.syncthreads()
        db, dw = dbiases[layer], dkernels[layer]
        for j in range(t, units, threads):
            db[j] = dense.column_sum(dz, m, j)
        source = xbuf if layer == 0 else ys[layer - 1]
        for e in range(t, dw.shape[0] * units, threads):
            r = e // units
            dw[r, e - r * units] = dense.product(source, dz, True, False, m, r, e - r * units)
        if layer > 0:
            dx, w = dxs[layer], kernels[layer]
            inputs = w.shape[0]
            for e in range(t, m * inputs, threads):
                i = e // inputs
                dx[i, e - i * inputs] = dense.product(dz, w, False, True, units, i, e - i * inputs)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _dense_steps(training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs, ys, dzs,
                 dxs, acts, alphas, loss_code, delta, fused, sparse, target_data, labels_data, weight_data, target,
                 labels, weight, grad, sample_losses, step_losses, out, logits, out_first, opt_code, lr, keep,
                 step_sizes, a, b, c, d, values, grads, s1, s2, s3):
    t, threads = cuda.threadIdx.x, cuda.blockDim.x
    n, features, top = order.shape[0], xbuf.shape[1], len(acts) - 1
    for step in range(first, last):
        b0 = step * batch
        m = min(n, b0 + batch) - b0
        for e in range(t, m * features, threads):  # the batch's rows (take_rows)
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
        cuda.syncthreads()
        _forward(m, xbuf, kernels, biases, zs, ys, acts, alphas, t, threads)
        y, units = ys[top], ys[top].shape[1]
        for e in range(t, m * units, threads):  # the head's outputs (and, inferring, its logits)
            i = e // units
            out[b0 - out_first + i, e - i * units] = y[i, e - i * units]
            if not training:
                logits[b0 - out_first + i, e - i * units] = zs[top][i, e - i * units]
        if not training:
            continue
        pred = zs[top] if fused else ys[top]
        for i in range(t, m, threads):
            sample_losses[i] = losses.weighted_sample(loss_code, delta, pred, target, labels, weight, grad, m, i)
        cuda.syncthreads()
        if t == 0:
            step_losses[step] = losses.mean_in_order(sample_losses, m)
        _backward(m, xbuf, kernels, dkernels, dbiases, zs, ys, dzs, dxs, grad, acts, alphas, fused, t, threads)
        size = step_sizes[step - first]
        for p in range(t, values.shape[0], threads):
            optim.update_element(opt_code, lr, keep, size, a, b, c, d, values, grads, s1, s2, s3, p)
        cuda.syncthreads()


def dense_steps(training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs, ys, dzs, dxs,
                acts, alphas, loss_code, delta, fused, sparse, target_data, labels_data, weight_data, target, labels,
                weight, grad, sample_losses, step_losses, out, logits, out_first, opt_code, lr, keep, step_sizes, a, b,
                c, d, values, grads, s1, s2, s3):
    """Steps first..last − 1 of a Dense stack (training), or its inference batches, in one launch of one block
    (the module's docstring)."""
    _dense_steps[1, THREADS](training, x, order, first, last, batch, xbuf, kernels, biases, dkernels, dbiases, zs,
                             ys, dzs, dxs, acts, alphas, loss_code, delta, fused, sparse, target_data, labels_data,
                             weight_data, target, labels, weight, grad, sample_losses, step_losses, out, logits,
                             out_first, opt_code, lr, keep, step_sizes, a, b, c, d, values, grads, s1, s2, s3)


KERNELS = ("dense_steps",)
