"""Optimizer kernels: gradient clipping and the parameter update in one pass over flat buffers.

All of a model's parameters live in one flat float32 buffer (and their gradients and optimizer slots in
buffers of the same layout), so one call updates the whole model. Formulas follow Keras 3.
These kernels use strict IEEE arithmetic (settings.STRICT_KERNEL), so their results are the same bytes
whether they run alone or inlined into the fast path.
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.settings import STRICT_KERNEL

SGD, RMSPROP, ADAM, ADAGRAD = range(4)
OPTIMIZER_CODES = {"sgd": SGD, "rmsprop": RMSPROP, "adam": ADAM, "adagrad": ADAGRAD}
CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE = range(4)
# Layout of the `hp` vector: hp[LR], hp[WEIGHT_DECAY], then the optimizer's own values from hp[2] on:
#   sgd: momentum, nesterov · rmsprop: rho, momentum, epsilon, centered
#   adam: beta_1, beta_2, epsilon, amsgrad · adagrad: epsilon
LR, WEIGHT_DECAY = 0, 1


@njit(**STRICT_KERNEL)
def sum_squares(x):
    """Σ x² in float64. x: 1-D."""
    total = 0.0
    for i in range(x.shape[0]):
        total += np.float64(x[i]) * x[i]
    return total


@njit(**STRICT_KERNEL)
def regularize(w, g, l1, l2):
    """Adds the L1/L2 penalty's gradient to g and returns the penalty l1·Σ|w| + l2·Σw².

    w, g: 1-D, same size.   for i: g[i] += l1·sign(w[i]) + 2·l2·w[i]
    """
    penalty = 0.0
    for i in range(w.shape[0]):
        v = w[i]
        sign = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
        penalty += l1 * abs(v) + l2 * v * v
        g[i] += l1 * sign + 2.0 * l2 * v
    return penalty


@njit(**STRICT_KERNEL)
def _segment_scale(grads, start, stop, clip_mode, clip, global_scale):
    # Per-tensor clipnorm needs this tensor's norm; the other modes share one scale for all tensors.
    if clip_mode == CLIP_NORM:
        norm = math.sqrt(sum_squares(grads[start:stop]))
        return clip / norm if norm > clip else 1.0
    return global_scale


@njit(**STRICT_KERNEL)
def _clipped(grads, start, stop, scale, limit, out):
    """out = clip(grads[start:stop] · scale, ±limit) in float32 (limit = inf when not clipping by value)."""
    for i in range(start, stop):
        g = grads[i] * scale
        out[i - start] = min(max(g, -limit), limit)


@njit(**STRICT_KERNEL)
def optimizer_step(code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip):
    """One update of every parameter. params/grads/slot1..3: (P,) flat buffers; offsets: (T+1,) tensor
    boundaries (for per-tensor clipnorm); iteration: updates already done (Adam's bias correction).

        g = clip(grads[i]); p[i] -= lr·wd·p[i]; p[i] -= update(g, slots[i])
    clip_mode: CLIP_NONE | CLIP_NORM (each tensor to norm ≤ clip) | CLIP_GLOBAL_NORM | CLIP_VALUE.
    Arithmetic is float32 like Keras's; each optimizer has its own branch-free loop so it vectorizes.
    """
    f32 = np.float32
    lr = f32(hp[LR])
    keep = f32(1.0 - hp[LR] * hp[WEIGHT_DECAY])  # decoupled weight decay: p ← p − lr·wd·p
    a, b, c, d = f32(hp[2]), f32(hp[3]), f32(hp[4]), f32(hp[5])
    global_scale = 1.0
    if clip_mode == CLIP_GLOBAL_NORM:
        norm = math.sqrt(sum_squares(grads))
        global_scale = clip / norm if norm > clip else 1.0
    limit = f32(clip) if clip_mode == CLIP_VALUE else f32(np.inf)
    clipping = clip_mode != CLIP_NONE
    alpha = lr
    if code == ADAM:  # Keras folds both bias corrections into the step size
        step = iteration + 1
        alpha = f32(hp[LR] * math.sqrt(1.0 - hp[3] ** step) / (1.0 - hp[2] ** step))
    scratch = np.empty(0, np.float32)
    for t in range(offsets.shape[0] - 1):
        start, stop = offsets[t], offsets[t + 1]
        g = grads[start:stop]
        if clipping:
            if scratch.shape[0] < stop - start:
                scratch = np.empty(stop - start, np.float32)
            g = scratch[:stop - start]
            _clipped(grads, start, stop, f32(_segment_scale(grads, start, stop, clip_mode, clip, global_scale)),
                     limit, g)
        p, s1, s2, s3 = params[start:stop], slot1[start:stop], slot2[start:stop], slot3[start:stop]
        size = stop - start
        if code == SGD:
            if a == 0.0:
                for i in range(size):
                    p[i] = p[i] * keep - lr * g[i]
            elif b != 0.0:  # Nesterov
                for i in range(size):
                    m = a * s1[i] - lr * g[i]
                    s1[i] = m
                    p[i] = p[i] * keep + a * m - lr * g[i]
            else:
                for i in range(size):
                    m = a * s1[i] - lr * g[i]
                    s1[i] = m
                    p[i] = p[i] * keep + m
        elif code == RMSPROP:  # a = rho, b = momentum, c = epsilon, d = centered
            centered, momentum = d != 0.0, b > 0.0  # loop-invariant: LLVM unswitches these branches
            for i in range(size):
                s1[i] = a * s1[i] + (f32(1.0) - a) * g[i] * g[i]
                denominator = s1[i] + c
                if centered:  # divide by the variance estimate instead
                    s2[i] = a * s2[i] + (f32(1.0) - a) * g[i]
                    denominator -= s2[i] * s2[i]
                increment = lr * g[i] / math.sqrt(denominator)
                if momentum:
                    s3[i] = b * s3[i] + increment
                    increment = s3[i]
                p[i] = p[i] * keep - increment
        elif code == ADAM:  # a = beta_1, b = beta_2, c = epsilon, d = amsgrad
            for i in range(size):
                s1[i] += (g[i] - s1[i]) * (f32(1.0) - a)
                s2[i] += (g[i] * g[i] - s2[i]) * (f32(1.0) - b)
            if d != 0.0:  # amsgrad: the running maximum of v replaces v
                for i in range(size):
                    s3[i] = max(s3[i], s2[i])
                    p[i] = p[i] * keep - alpha * s1[i] / (math.sqrt(s3[i]) + c)
            else:
                for i in range(size):
                    p[i] = p[i] * keep - alpha * s1[i] / (math.sqrt(s2[i]) + c)
        elif code == ADAGRAD:  # a = epsilon
            for i in range(size):
                s1[i] += g[i] * g[i]
                p[i] = p[i] * keep - lr * g[i] / math.sqrt(s1[i] + a)
