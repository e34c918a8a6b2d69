"""The GPU path's own kernels for Keras masks (no CPU twin: the CPU layers do this in NumPy): Masking's padded
steps, and GlobalAveragePooling1D's mean over the real steps only. Masks are (n, T) uint8 device arrays."""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on


@cuda.jit(**KERNEL)
def _mask_values(x, value, keep, y):
    row = cuda.grid(1)
    steps = x.shape[1]
    if row < x.shape[0] * steps:
        b, t = row // steps, row % steps
        real = 0
        for f in range(x.shape[2]):
            if x[b, t, f] != value:
                real = 1
        keep[b, t] = real
        for f in range(x.shape[2]):
            y[b, t, f] = x[b, t, f] * real


def mask_values(x, value, keep, y):
    """keep[b, t] = any(x[b, t] ≠ value); y = x · keep (Masking: (n, T, f) arrays)."""
    _mask_values[on(*grid1(x.shape[0] * x.shape[1]))](x, np.float32(value), keep, y)


@cuda.jit(**KERNEL)
def _step_shares(mask, share):
    b = cuda.grid(1)
    if b < mask.shape[0]:
        count = 0
        for t in range(mask.shape[1]):
            count += mask[b, t]
        scale = np.float32(max(count, 1))
        for t in range(mask.shape[1]):
            share[b, t] = np.float32(mask[b, t]) / scale


def step_shares(mask, share):
    """share[b, t] = mask[b, t] / max(Σ_t mask[b, t], 1): each real step's share of a sequence's mean."""
    _step_shares[on(*grid1(mask.shape[0]))](mask, share)


@cuda.jit(**KERNEL)
def _masked_mean(share, x, y):
    c, row0, row_step = cells()
    if c < x.shape[2]:
        for b in range(row0, x.shape[0], row_step):
            total = np.float32(0.0)
            for t in range(x.shape[1]):
                total += share[b, t] * x[b, t, c]
            y[b, c] = total


def masked_mean(share, x, y):
    """y[b, c] = Σ_t share[b, t] · x[b, t, c], the steps in order (GlobalAveragePooling1D with a mask)."""
    _masked_mean[on(*grid2(x.shape[0], x.shape[2]))](share, x, y)


@cuda.jit(**KERNEL)
def _spread_steps(share, dy, dx):
    c, row0, row_step = cells()
    steps = dx.shape[1]
    if c < dx.shape[2]:
        for row in range(row0, dx.shape[0] * steps, row_step):
            b, t = row // steps, row % steps
            dx[b, t, c] = share[b, t] * dy[b, c]


def spread_steps(share, dy, dx):
    """dx[b, t, c] = share[b, t] · dy[b, c]: the masked mean's gradient."""
    _spread_steps[on(*grid2(dx.shape[0] * dx.shape[1], dx.shape[2]))](share, dy, dx)


KERNELS = ("mask_values", "step_shares", "masked_mean", "spread_steps")
