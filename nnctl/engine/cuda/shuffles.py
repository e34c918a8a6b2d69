"""The GPU path's own reshuffles and element-wise helpers (no CPU twin: the CPU layers do these with NumPy):
transposes, column blocks, steps reversed or masked, the merges' sums, differences, means and extrema — each
against its NumPy form in tests/engine/cuda_sim/test_dense_twins.py."""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on


@cuda.jit(**KERNEL)
def _transpose(a, out):
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for i in range(row0, out.shape[0], row_step):
            out[i, j] = a[j, i]


def transpose(a, out):
    """out = aᵀ, contiguous (the recurrent backward's Uᵀ; the GPU's own, the CPU transposes with NumPy)."""
    _transpose[on(*grid2(*out.shape))](a, out)


@cuda.jit(**KERNEL)
def _copy_columns(src, dst, col0):
    j, row0, row_step = cells()
    if j < src.shape[1]:
        for i in range(row0, src.shape[0], row_step):
            dst[i, col0 + j] = src[i, j]


def copy_columns(src, dst, col0):
    """dst[:, col0:col0 + src.shape[1]] = src (the GRU backward's h̃ block; the GPU's own)."""
    _copy_columns[on(*grid2(*src.shape))](src, dst, col0)


@cuda.jit(**KERNEL)
def _take_columns(src, col0, out):
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for i in range(row0, out.shape[0], row_step):
            out[i, j] = src[i, col0 + j]


def take_columns(src, col0, out):
    """out = src[:, col0:col0 + out.shape[1]], contiguous (Bidirectional's halves of a gradient; the GPU's own)."""
    _take_columns[on(*grid2(*out.shape))](src, col0, out)


@cuda.jit(**KERNEL)
def _reverse_steps(x, out):
    j, row0, row_step = cells()
    steps = x.shape[1]
    if j < x.shape[2]:
        for row in range(row0, x.shape[0] * steps, row_step):
            b, t = row // steps, row % steps
            out[b, t, j] = x[b, steps - 1 - t, j]


def reverse_steps(x, out):
    """out[:, t] = x[:, T − 1 − t] for (n, T, f) arrays (a backward-in-time recurrent layer; the GPU's own)."""
    _reverse_steps[on(*grid2(x.shape[0] * x.shape[1], x.shape[2]))](x, out)


@cuda.jit(**KERNEL)
def _add(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] + b[i]


def add(a, b, out):
    """out = a + b element-wise, 1-D (Bidirectional's two input gradients; the GPU's own)."""
    _add[on(*grid1(out.shape[0]))](a, b, out)


@cuda.jit(**KERNEL)
def _subtract(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] - b[i]


def subtract(a, b, out):
    """out = a − b element-wise, 1-D (the Subtract merge; the GPU's own)."""
    _subtract[on(*grid1(out.shape[0]))](a, b, out)


@cuda.jit(**KERNEL)
def _divide(a, divisor, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] / divisor


def divide(a, divisor, out):
    """out = a / divisor, 1-D (the Average merge's mean and gradient, a negation by −1; the GPU's own)."""
    _divide[on(*grid1(out.shape[0]))](a, np.float32(divisor), out)


@cuda.jit(**KERNEL)
def _extremum_update(y, winner, x, index, largest):
    i = cuda.grid(1)
    if i < y.shape[0]:
        if (x[i] > y[i]) if largest else (x[i] < y[i]):
            y[i], winner[i] = x[i], index


def extremum_update(y, winner, x, index, largest):
    """Where x beats y (strictly: on a tie the earlier input keeps it), y = x and winner = index; 1-D (the
    Maximum and Minimum merges, one input at a time; the GPU's own)."""
    _extremum_update[on(*grid1(y.shape[0]))](y, winner, x, np.int32(index), bool(largest))


@cuda.jit(**KERNEL)
def _winner_gradient(dy, winner, index, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = dy[i] if winner[i] == index else 0.0


def winner_gradient(dy, winner, index, out):
    """out = dy where input `index` gave the output, else 0; 1-D (Maximum/Minimum's gradients; the GPU's own)."""
    _winner_gradient[on(*grid1(out.shape[0]))](dy, winner, np.int32(index), out)


@cuda.jit(**KERNEL)
def _mask_steps(x, mask, out):
    j, row0, row_step = cells()
    steps = x.shape[1]
    if j < x.shape[2]:
        for row in range(row0, x.shape[0] * steps, row_step):
            b, t = row // steps, row % steps
            out[b, t, j] = x[b, t, j] * mask[b, t]


def mask_steps(x, mask, out):
    """out[b, t] = x[b, t] · mask[b, t] for (n, T, f) arrays and an (n, T) uint8 mask: a masked recurrent layer's
    zeros at padded steps, as the CPU layer's `hs * step_mask` (the GPU's own)."""
    _mask_steps[on(*grid2(x.shape[0] * x.shape[1], x.shape[2]))](x, mask, out)


KERNELS = ("transpose", "copy_columns", "take_columns", "reverse_steps", "add", "subtract", "divide", "extremum_update",
           "winner_gradient", "mask_steps")
