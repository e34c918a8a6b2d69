"""CUDA twin of nnctl/engine/cpu/losses.py: `loss_forward_backward(code, delta, pred, target, labels, weight,
grad)` — one thread per sample writes its weighted loss and its gradient row, then one thread sums the
samples in order (Keras's sum_over_batch_size; the same order as the CPU's, so no atomics and no drift).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from nnctl.engine.cpu.losses import (BCE_LOGITS, BCE_PROBS, CCE_LOGITS, CCE_PROBS, COSINE, EPSILON, HUBER, KLD,
                                     LOG_COSH, MAE, MSE, SPARSE_CCE_LOGITS, SPARSE_CCE_PROBS)
from nnctl.engine.cuda.launch import KERNEL, SIMULATED, grid1, on, scratch, wide


@cuda.jit(device=True)
def _log_sigmoid(v):
    return min(v, 0.0) - math.log1p(math.exp(-abs(v)))


@cuda.jit(device=True)
def _log_normalizer(pred, i):
    top = pred[i, 0]
    for j in range(1, pred.shape[1]):
        top = max(top, pred[i, j])
    norm = 0.0
    for j in range(pred.shape[1]):
        norm += math.exp(pred[i, j] - top)
    return top + math.log(norm)


@cuda.jit(device=True)
def _renormalized_cce(i, scale, pred, target, labels, sparse, grad):
    units = pred.shape[1]
    mass = 0.0
    for j in range(units):
        mass += pred[i, j]
    sample = 0.0
    inner = 0.0
    for j in range(units):
        q = pred[i, j] / mass
        t = (1.0 if j == labels[i] else 0.0) if sparse else target[i, j]
        qc = min(max(q, EPSILON), 1.0 - EPSILON)
        sample -= t * math.log(qc)
        dq = 0.0 if (q < EPSILON or q > 1.0 - EPSILON) else -t / qc
        grad[i, j] = dq
        inner += dq * q
    for j in range(units):
        grad[i, j] = scale * (grad[i, j] - inner) / mass
    return sample


@cuda.jit(device=True)
def _sample(code, i, scale, delta, pred, target, labels, grad):
    """Sample i's loss ℓᵢ; writes grad[i] = scale · ∂ℓᵢ/∂pred[i] (the CPU kernels' formulas, loss by loss)."""
    units = pred.shape[1]
    sample = 0.0
    if code == CCE_LOGITS or code == SPARSE_CCE_LOGITS:
        log_norm = _log_normalizer(pred, i)
        if code == SPARSE_CCE_LOGITS:
            label = labels[i]
            for j in range(units):
                grad[i, j] = scale * math.exp(pred[i, j] - log_norm)
            grad[i, label] -= scale
            return log_norm - pred[i, label]
        mass = 0.0
        for j in range(units):
            sample -= target[i, j] * (pred[i, j] - log_norm)
            mass += target[i, j]
        for j in range(units):
            grad[i, j] = scale * (math.exp(pred[i, j] - log_norm) * mass - target[i, j])
        return sample
    if code == CCE_PROBS or code == SPARSE_CCE_PROBS:
        return _renormalized_cce(i, scale, pred, target, labels, code == SPARSE_CCE_PROBS, grad)
    if code == COSINE:
        tt = 0.0
        pp = 0.0
        tp = 0.0
        for j in range(units):
            tt += target[i, j] * target[i, j]
            pp += pred[i, j] * pred[i, j]
            tp += target[i, j] * pred[i, j]
        tn = math.sqrt(max(tt, 1e-12))
        pn = math.sqrt(max(pp, 1e-12))
        cos = tp / (tn * pn)
        for j in range(units):
            radial = 0.0 if pp < 1e-12 else cos * pred[i, j] / pn
            grad[i, j] = -scale * (target[i, j] / tn - radial) / pn
        return -cos
    for j in range(units):  # the element-wise losses
        z = pred[i, j]
        t = target[i, j]
        e = z - t
        if code == BCE_LOGITS:
            sample -= t * _log_sigmoid(z) + (1.0 - t) * _log_sigmoid(-z)
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            grad[i, j] = scale * (p - t) / units
        elif code == BCE_PROBS:
            p = min(max(z, EPSILON), 1.0 - EPSILON)
            sample -= t * math.log(p) + (1.0 - t) * math.log(1.0 - p)
            clipped = z < EPSILON or z > 1.0 - EPSILON
            grad[i, j] = 0.0 if clipped else scale * (-t / p + (1.0 - t) / (1.0 - p)) / units
        elif code == MSE:
            sample += e * e
            grad[i, j] = scale * 2.0 * e / units
        elif code == MAE:
            sample += abs(e)
            grad[i, j] = scale * (1.0 if e > 0 else (-1.0 if e < 0 else 0.0)) / units
        elif code == HUBER:
            if abs(e) <= delta:
                sample += 0.5 * e * e
                grad[i, j] = scale * e / units
            else:
                sample += delta * abs(e) - 0.5 * delta * delta
                grad[i, j] = scale * delta * (1.0 if e > 0 else -1.0) / units
        elif code == KLD:
            tc = min(max(t, EPSILON), 1.0)
            pc = min(max(z, EPSILON), 1.0)
            sample += tc * math.log(tc / pc)
            clipped = z < EPSILON or z > 1.0
            grad[i, j] = 0.0 if clipped else -scale * tc / pc
        elif code == LOG_COSH:
            sample += abs(e) + math.log1p(math.exp(-2.0 * abs(e))) - 0.6931471805599453
            grad[i, j] = scale * math.tanh(e) / units
    return sample if code == KLD else sample / units


@cuda.jit(device=True)
def weighted_sample(code, delta, pred, target, labels, weight, grad, n, i):
    """Sample i's weighted loss wᵢ·ℓᵢ of a batch of n, writing its gradient row (the kernels' cell, shared with
    fused.py's whole-step kernel)."""
    return weight[i] * _sample(code, i, weight[i] / n, delta, pred, target, labels, grad)


@cuda.jit(device=True)
def mean_in_order(losses, n):
    acc = 0.0
    for i in range(n):
        acc += losses[i]
    return acc / n


@cuda.jit(**KERNEL)
def _samples(code, delta, pred, target, labels, weight, grad, losses):
    i = cuda.grid(1)
    if i < pred.shape[0]:
        losses[i] = weighted_sample(code, delta, pred, target, labels, weight, grad, pred.shape[0], i)


@cuda.jit(**KERNEL)
def _sum_in_order(losses, out, slot):
    if cuda.grid(1) == 0:
        out[slot] = mean_in_order(losses, losses.shape[0])


ONE_BLOCK_GPU = 1024
ONE_BLOCK = 64 if SIMULATED else ONE_BLOCK_GPU  # the most samples whose loss and mean take one launch (one block)


@wide(ONE_BLOCK_GPU)
def _samples_mean(code, delta, pred, target, labels, weight, grad, losses, out, slot):
    """_samples and _sum_in_order in one launch of one block (a batch of at most ONE_BLOCK samples)."""
    i = cuda.threadIdx.x
    if i < pred.shape[0]:
        losses[i] = weighted_sample(code, delta, pred, target, labels, weight, grad, pred.shape[0], i)
    cuda.syncthreads()
    if i == 0:
        out[slot] = mean_in_order(losses, pred.shape[0])


def loss_forward_backward(code, delta, pred, target, labels, weight, grad, out=None, slot=0):
    """The batch loss Σᵢ wᵢ·ℓᵢ / n, writing grad = ∂loss/∂pred, for a loss code (as the CPU kernel). With `out`
    (a float64 device array) the loss goes to out[slot] instead of the host: no synchronization per step, and
    for a batch of at most ONE_BLOCK samples, one launch."""
    n = pred.shape[0]
    losses = scratch("losses", n)
    if out is not None and n <= ONE_BLOCK:
        _samples_mean[on(1, max(32, -(-n // 32) * 32))](code, float(delta), pred, target, labels, weight, grad, losses,
                                                        out, slot)
        return None
    _samples[on(*grid1(n))](code, float(delta), pred, target, labels, weight, grad, losses)
    if out is not None:
        _sum_in_order[on(1, 1)](losses, out, slot)
        return None
    total = scratch("loss", 1)
    _sum_in_order[on(1, 1)](losses, total, 0)
    return float(total.copy_to_host()[0]) if hasattr(total, "copy_to_host") else float(total[0])


@cuda.jit(**KERNEL)
def _count_kept(mask, count):
    if cuda.grid(1) == 0:
        kept = 0
        for i in range(mask.shape[0]):
            kept += mask[i]
        count[0] = kept


@cuda.jit(**KERNEL)
def _masked_weights(weight, mask, count, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        share = numba.float32(mask.shape[0] / max(numba.float64(count[0]), 1e-7))
        out[i] = numba.float32(weight[i] * numba.float32(mask[i])) * share


def masked_loss_weights(weight, mask, out):
    """out = weight · mask · (size / kept): a per-step output's loss weights under its Keras mask (1-D, one entry
    a step; padded steps weigh 0, the real ones the mean over them), as nn/inputs.py's `masked_weights`."""
    count = scratch("kept steps", 1, np.int64)
    _count_kept[on(1, 1)](mask, count)
    _masked_weights[on(*grid1(out.shape[0]))](weight, mask, count, out)


@cuda.jit(**KERNEL)
def _scale(x, factor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = x[i] * factor


def scale_values(x, factor, out):
    """out = x · factor in float32 (1-D): an output's loss gradient times its loss weight."""
    _scale[on(*grid1(out.shape[0]))](x, np.float32(factor), out)


# With the GPU's own two (no CPU twin): the loss weighting of per-step and several outputs (nn/cudaheads.py).
KERNELS = ("loss_forward_backward", "masked_loss_weights", "scale_values")
