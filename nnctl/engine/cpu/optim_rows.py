"""Optimizer updates of the rows a step used, for tables whose other rows have a zero gradient (Embedding).

A dense step would only decay those rows' RMSprop accumulator (s ← ρ·s, the weights stay): that decay is
applied lazily, ρᵏ at once, when a row is next used and when the epoch ends (`rows_flush`).
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.cpu.optim import LR
from nnctl.engine.settings import STRICT_KERNEL


@njit(**STRICT_KERNEL)
def _catch_up(slot, row, missed, rho):
    """slot[row] ← ρ^missed · slot[row]: the decays of the `missed` steps that did not use the row."""
    if missed > 0:
        decay = np.float32(rho ** missed)
        for i in range(slot.shape[1]):
            slot[row, i] *= decay


@njit(**STRICT_KERNEL)
def rmsprop_rows_step(hp, iteration, rows, last, params, grads, slot1):
    """RMSprop (no momentum, not centered, no weight decay) on `rows` of one table, as rmsprop_plain_step
    computes them. params, grads, slot1: (V, D); rows: (k,) int32, each once; last: (V,) int64, the step each
    row's accumulator is current for (−1: none yet).

    for r in rows: s[r] ← ρ^(iteration−1−last[r])·s[r]; s[r] ← ρ·s[r] + (1−ρ)·g[r]²; p[r] −= lr·g[r]/√(s[r]+ε)
    """
    f32 = np.float32
    lr, rho, epsilon = f32(hp[LR]), f32(hp[2]), f32(hp[4])
    for j in range(rows.shape[0]):
        r = rows[j]
        _catch_up(slot1, r, iteration - 1 - last[r], np.float64(rho))
        for i in range(params.shape[1]):
            g = grads[r, i]
            slot1[r, i] = rho * slot1[r, i] + (f32(1.0) - rho) * g * g
            params[r, i] = params[r, i] * f32(1.0) - lr * g / math.sqrt(slot1[r, i] + epsilon)
        last[r] = iteration


@njit(**STRICT_KERNEL)
def sgd_rows_step(hp, iteration, rows, last, params, grads, slot1):
    """Plain SGD (no momentum, no weight decay) on `rows`: p[r] −= lr·g[r]. Same arguments as rmsprop_rows_step;
    nothing is owed to the other rows."""
    lr = np.float32(hp[LR])
    for j in range(rows.shape[0]):
        r = rows[j]
        for i in range(params.shape[1]):
            params[r, i] = params[r, i] * np.float32(1.0) - lr * grads[r, i]
        last[r] = iteration


@njit(**STRICT_KERNEL)
def rows_flush(hp, iteration, last, slot1, decays):
    """Brings every row's accumulator up to date after `iteration` steps (decays != 0: RMSprop's ρ-decay)."""
    if decays == 0:
        for r in range(last.shape[0]):
            last[r] = iteration - 1
        return
    rho = np.float64(np.float32(hp[2]))  # the float32 ρ the dense step multiplies by, raised in float64
    for r in range(last.shape[0]):
        _catch_up(slot1, r, iteration - 1 - last[r], rho)
        last[r] = iteration - 1


KERNELS = ("rmsprop_rows_step", "sgd_rows_step", "rows_flush")
