"""Optimizer kernels: gradient clipping and the parameter update in one pass over flat buffers.

All of a model's parameters live in one flat float32 buffer (and their gradients and optimizer slots in
buffers of the same layout), so one call updates the whole model. Formulas follow Keras 3.
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.settings import FASTMATH

SGD, RMSPROP, ADAM, ADAGRAD = range(4)
OPTIMIZER_CODES = {"sgd": SGD, "rmsprop": RMSPROP, "adam": ADAM, "adagrad": ADAGRAD}
CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE = range(4)
# Layout of the `hp` vector: hp[LR], hp[WEIGHT_DECAY], then the optimizer's own values from hp[2] on:
#   sgd: momentum, nesterov · rmsprop: rho, momentum, epsilon, centered
#   adam: beta_1, beta_2, epsilon, amsgrad · adagrad: epsilon
LR, WEIGHT_DECAY = 0, 1


@njit(cache=True, fastmath=FASTMATH)
def sum_squares(x):
    """Σ x² in float64. x: 1-D."""
    total = 0.0
    for i in range(x.shape[0]):
        total += np.float64(x[i]) * x[i]
    return total


@njit(cache=True, fastmath=FASTMATH)
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


@njit(cache=True, fastmath=FASTMATH)
def _segment_scale(grads, start, stop, clip_mode, clip, global_scale):
    # Per-tensor clipnorm needs this tensor's norm; the other modes share one scale for all tensors.
    if clip_mode == CLIP_NORM:
        norm = math.sqrt(sum_squares(grads[start:stop]))
        return clip / norm if norm > clip else 1.0
    return global_scale


@njit(cache=True, fastmath=FASTMATH)
def optimizer_step(code, hp, iteration, offsets, params, grads, slot1, slot2, slot3, clip_mode, clip):
    """One update of every parameter. params/grads/slot1..3: (P,) flat buffers; offsets: (T+1,) tensor
    boundaries (for per-tensor clipnorm); iteration: updates already done (Adam's bias correction).

        g = clip(grads[i]); p[i] -= lr·wd·p[i]; p[i] -= update(g, slots[i])
    clip_mode: CLIP_NONE | CLIP_NORM (each tensor to norm ≤ clip) | CLIP_GLOBAL_NORM | CLIP_VALUE.
    """
    lr = hp[LR]
    decay = lr * hp[WEIGHT_DECAY]
    global_scale = 1.0
    if clip_mode == CLIP_GLOBAL_NORM:
        norm = math.sqrt(sum_squares(grads))
        global_scale = clip / norm if norm > clip else 1.0
    limit = clip if clip_mode == CLIP_VALUE else np.inf
    beta_1, beta_2 = hp[2], hp[3]
    alpha = lr
    if code == ADAM:  # Keras folds both bias corrections into the step size
        step = iteration + 1
        alpha = lr * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
    for t in range(offsets.shape[0] - 1):
        start, stop = offsets[t], offsets[t + 1]
        scale = _segment_scale(grads, start, stop, clip_mode, clip, global_scale)
        for i in range(start, stop):
            g = grads[i] * scale
            if g > limit:
                g = limit
            elif g < -limit:
                g = -limit
            p = params[i] - decay * params[i]
            if code == SGD:
                momentum = hp[2]
                if momentum == 0.0:
                    p -= lr * g
                else:
                    m = momentum * slot1[i] - lr * g
                    slot1[i] = m
                    p += momentum * m - lr * g if hp[3] != 0.0 else m
            elif code == RMSPROP:
                rho, momentum, eps = hp[2], hp[3], hp[4]
                v = rho * slot1[i] + (1.0 - rho) * g * g
                slot1[i] = v
                denominator = v + eps
                if hp[5] != 0.0:  # centered: divide by the variance estimate instead
                    mean_g = rho * slot2[i] + (1.0 - rho) * g
                    slot2[i] = mean_g
                    denominator -= mean_g * mean_g
                increment = lr * g / math.sqrt(denominator)
                if momentum > 0.0:
                    m = momentum * slot3[i] + increment
                    slot3[i] = m
                    p -= m
                else:
                    p -= increment
            elif code == ADAM:
                m = slot1[i] + (g - slot1[i]) * (1.0 - beta_1)
                v = slot2[i] + (g * g - slot2[i]) * (1.0 - beta_2)
                slot1[i] = m
                slot2[i] = v
                if hp[5] != 0.0:  # amsgrad: the running maximum of v replaces v
                    v = max(slot3[i], v)
                    slot3[i] = v
                p -= alpha * m / (math.sqrt(v) + hp[4])
            elif code == ADAGRAD:
                acc = slot1[i] + g * g
                slot1[i] = acc
                p -= lr * g / math.sqrt(acc + hp[2])
            params[i] = p
