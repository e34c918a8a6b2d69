"""Optimizer kernels: gradient clipping, and each optimizer's update in one pass over flat buffers.

All of a model's parameters live in one flat float32 buffer (and their gradients and optimizer slots in
buffers of the same layout), so one call updates the whole model. Formulas follow Keras 3.
These kernels use strict IEEE arithmetic (settings.STRICT_KERNEL), so their results are the same bytes
whether they run alone or inlined into the fast path.
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.settings import STRICT_KERNEL

SGD, RMSPROP, ADAM, ADAGRAD, RMSPROP_PLAIN = range(5)
# rmsprop_plain: RMSprop without momentum and not centered (Keras's defaults, and the book's): a loop of its
# own, so the usual case compiles one loop instead of four.
OPTIMIZER_CODES = {"sgd": SGD, "rmsprop": RMSPROP, "adam": ADAM, "adagrad": ADAGRAD, "rmsprop_plain": RMSPROP_PLAIN}
CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE = range(4)
# Layout of the `hp` vector: hp[LR], hp[WEIGHT_DECAY], then the optimizer's own values from hp[2] on:
#   sgd: momentum, nesterov · rmsprop and rmsprop_plain: rho, momentum, epsilon, centered
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
def clip_gradients(offsets, grads, clip_mode, clip):
    """Clips grads in place (as torch.nn.utils.clip_grad_norm_ does). offsets: (T+1,) tensor boundaries.

    CLIP_NORM: each tensor to norm ≤ clip · CLIP_GLOBAL_NORM: all of them together to norm ≤ clip ·
    CLIP_VALUE: each element to [−clip, clip] · CLIP_NONE: nothing.
    """
    if clip_mode == CLIP_NONE:
        return
    f32 = np.float32
    scale = 1.0
    if clip_mode == CLIP_GLOBAL_NORM:
        norm = math.sqrt(sum_squares(grads))
        scale = clip / norm if norm > clip else 1.0
    limit = f32(clip) if clip_mode == CLIP_VALUE else f32(np.inf)
    for t in range(offsets.shape[0] - 1):
        start, stop = offsets[t], offsets[t + 1]
        if clip_mode == CLIP_NORM:  # this tensor's own norm
            norm = math.sqrt(sum_squares(grads[start:stop]))
            scale = clip / norm if norm > clip else 1.0
        tensor_scale = f32(scale)
        for i in range(start, stop):
            grads[i] = min(max(grads[i] * tensor_scale, -limit), limit)


@njit(inline="always", **STRICT_KERNEL)
def _each_tensor(update, hp, alpha, offsets, params, grads, slot1, slot2, slot3):
    """Calls update(p, g, s1, s2, s3, lr, keep, alpha, a, b, c, d) on each tensor's slices. Inlined into each
    *_step kernel below, so `update` is a constant there."""
    f32 = np.float32
    lr = f32(hp[LR])
    keep = f32(1.0 - hp[LR] * hp[WEIGHT_DECAY])  # decoupled weight decay: p ← p − lr·wd·p
    a, b, c, d = f32(hp[2]), f32(hp[3]), f32(hp[4]), f32(hp[5])
    for t in range(offsets.shape[0] - 1):
        start, stop = offsets[t], offsets[t + 1]
        update(params[start:stop], grads[start:stop], slot1[start:stop], slot2[start:stop], slot3[start:stop], lr,
               keep, alpha, a, b, c, d)


# One kernel per optimizer, so a model compiles only its own (one kernel branching on an optimizer code took
# 1.3 s to compile). Each updates every parameter once:
# <optimizer>_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3).
#     params/grads/slot1..3: (P,) flat buffers; offsets: (T+1,) tensor boundaries; iteration: updates already
#     done (Adam's bias correction). p[i] -= lr·wd·p[i]; p[i] -= update(grads[i], slots[i]). Clipping is
#     clip_gradients' job, called first and only when asked. Arithmetic is float32 like Keras's; each loop
#     is branch-free and vectorizes.

@njit(**STRICT_KERNEL)
def _sgd(p, g, s1, s2, s3, lr, keep, alpha, momentum, nesterov, c, d):
    if momentum == 0.0:
        for i in range(p.shape[0]):
            p[i] = p[i] * keep - lr * g[i]
    elif nesterov != 0.0:
        for i in range(p.shape[0]):
            m = momentum * s1[i] - lr * g[i]
            s1[i] = m
            p[i] = p[i] * keep + momentum * m - lr * g[i]
    else:
        for i in range(p.shape[0]):
            m = momentum * s1[i] - lr * g[i]
            s1[i] = m
            p[i] = p[i] * keep + m


@njit(**STRICT_KERNEL)
def sgd_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3):
    _each_tensor(_sgd, hp, np.float32(hp[LR]), offsets, params, grads, slot1, slot2, slot3)


@njit(**STRICT_KERNEL)
def _rmsprop(p, g, s1, s2, s3, lr, keep, alpha, rho, momentum, epsilon, centered):
    f32 = np.float32
    is_centered, has_momentum = centered != 0.0, momentum > 0.0  # loop-invariant: LLVM unswitches these branches
    for i in range(p.shape[0]):
        s1[i] = rho * s1[i] + (f32(1.0) - rho) * g[i] * g[i]
        denominator = s1[i] + epsilon
        if is_centered:  # divide by the variance estimate instead
            s2[i] = rho * s2[i] + (f32(1.0) - rho) * g[i]
            denominator -= s2[i] * s2[i]
        increment = lr * g[i] / math.sqrt(denominator)
        if has_momentum:
            s3[i] = momentum * s3[i] + increment
            increment = s3[i]
        p[i] = p[i] * keep - increment


@njit(**STRICT_KERNEL)
def rmsprop_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3):
    _each_tensor(_rmsprop, hp, np.float32(hp[LR]), offsets, params, grads, slot1, slot2, slot3)


@njit(**STRICT_KERNEL)
def _rmsprop_plain(p, g, s1, s2, s3, lr, keep, alpha, rho, momentum, epsilon, centered):
    for i in range(p.shape[0]):
        s1[i] = rho * s1[i] + (np.float32(1.0) - rho) * g[i] * g[i]
        p[i] = p[i] * keep - lr * g[i] / math.sqrt(s1[i] + epsilon)


@njit(**STRICT_KERNEL)
def rmsprop_plain_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3):
    _each_tensor(_rmsprop_plain, hp, np.float32(hp[LR]), offsets, params, grads, slot1, slot2, slot3)


@njit(**STRICT_KERNEL)
def _adam(p, g, s1, s2, s3, lr, keep, alpha, beta_1, beta_2, epsilon, amsgrad):
    f32 = np.float32
    for i in range(p.shape[0]):
        s1[i] += (g[i] - s1[i]) * (f32(1.0) - beta_1)
        s2[i] += (g[i] * g[i] - s2[i]) * (f32(1.0) - beta_2)
    if amsgrad != 0.0:  # the running maximum of v replaces v
        for i in range(p.shape[0]):
            s3[i] = max(s3[i], s2[i])
            p[i] = p[i] * keep - alpha * s1[i] / (math.sqrt(s3[i]) + epsilon)
    else:
        for i in range(p.shape[0]):
            p[i] = p[i] * keep - alpha * s1[i] / (math.sqrt(s2[i]) + epsilon)


@njit(**STRICT_KERNEL)
def adam_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3):
    # Keras folds both bias corrections into the step size.
    step = iteration + 1
    alpha = np.float32(hp[LR] * math.sqrt(1.0 - hp[3] ** step) / (1.0 - hp[2] ** step))
    _each_tensor(_adam, hp, alpha, offsets, params, grads, slot1, slot2, slot3)


@njit(**STRICT_KERNEL)
def _adagrad(p, g, s1, s2, s3, lr, keep, alpha, epsilon, b, c, d):
    for i in range(p.shape[0]):
        s1[i] += g[i] * g[i]
        p[i] = p[i] * keep - lr * g[i] / math.sqrt(s1[i] + epsilon)


@njit(**STRICT_KERNEL)
def adagrad_step(hp, iteration, offsets, params, grads, slot1, slot2, slot3):
    _each_tensor(_adagrad, hp, np.float32(hp[LR]), offsets, params, grads, slot1, slot2, slot3)


# Indexed by OPTIMIZER_CODES.
OPTIMIZER_KERNELS = (sgd_step, rmsprop_step, adam_step, adagrad_step, rmsprop_plain_step)


def optimizer_step(code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip):
    """One update of every parameter for an optimizer code, the gradients clipped first (in place) as asked:
    calls clip_gradients, then that optimizer's kernel."""
    if clip_mode != CLIP_NONE:
        clip_gradients(offsets, grads, clip_mode, clip)
    OPTIMIZER_KERNELS[code](hp, iteration, offsets, params, grads, slot1, slot2, slot3)
