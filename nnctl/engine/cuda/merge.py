"""The GPU path's own kernels for the merge layers (no CPU twin: the CPU layers do this in NumPy): Dot's product of
two samples and its L2 normalization, and the Keras masks a merge passes on. The element-wise merges use dense.py's
add, subtract, divide, extremum_update and winner_gradient.

Each sample is a flat row of an (n, size) array, and a matrix in it is read through two strides (a row's and a
column's), so Dot's moved axes and transposes cost no copy. Masks are uint8 arrays of 0 and 1.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on


@cuda.jit(**KERNEL)
def _strided_matmul(a, a_row, a_inner, b, b_inner, b_col, out, out_row, out_col, rows, cols, depth):
    col, row0, row_step = cells()
    if col < cols:
        for row in range(row0, out.shape[0] * rows, row_step):
            sample, i = row // rows, row % rows
            total = np.float32(0.0)
            for k in range(depth):
                total += a[sample, i * a_row + k * a_inner] * b[sample, k * b_inner + col * b_col]
            out[sample, i * out_row + col * out_col] = total


def strided_matmul(a, a_strides, b, b_strides, out, out_strides, rows, cols, depth):
    """One (rows, depth)·(depth, cols) product a sample, the depth summed in order, in float32:

        for each sample s, i < rows, j < cols:
            out[s, i·out_row + j·out_col] = Σ_k a[s, i·a_row + k·a_inner] · b[s, k·b_inner + j·b_col]

    a, b, out: (n, size) float32, each sample's values a flat row; `*_strides`: (row stride, column stride) of
    that operand's matrix in its row (0 for an axis of size 1)."""
    _strided_matmul[on(*grid2(out.shape[0] * rows, cols))](a, a_strides[0], a_strides[1], b, b_strides[0], b_strides[1],
                                                           out, out_strides[0], out_strides[1], rows, cols, depth)


@cuda.jit(**KERNEL)
def _l2_normalize(x, outer, inner, count, depth, epsilon, y, inverse_norm, squares):
    row = cuda.grid(1)
    if row < x.shape[0] * count:
        sample, i = row // count, row % count
        total = np.float32(0.0)
        for k in range(depth):
            value = x[sample, i * outer + k * inner]
            total += value * value
        scale = np.float32(1.0) / np.float32(math.sqrt(max(total, epsilon)))
        squares[sample, i], inverse_norm[sample, i] = total, scale
        for k in range(depth):
            y[sample, i * outer + k * inner] = x[sample, i * outer + k * inner] * scale


def l2_normalize(x, strides, count, depth, epsilon, y, inverse_norm, squares):
    """Keras's l2_normalize of each of a sample's `count` vectors of `depth` values (x's vector i, element k at
    i·strides[0] + k·strides[1] of its row), as the CPU's Dot with normalize:

        squares = Σ_k x², in order;  inverse_norm = 1 / sqrt(max(squares, ε));  y = x · inverse_norm

    x, y: (n, size) float32; inverse_norm, squares: (n, count) float32 (the backward reads both)."""
    _l2_normalize[on(*grid1(x.shape[0] * count))](x, strides[0], strides[1], count, depth, np.float32(epsilon), y,
                                                  inverse_norm, squares)


@cuda.jit(**KERNEL)
def _l2_normalize_backward(grad, x, inverse_norm, squares, outer, inner, count, depth, epsilon, dx):
    row = cuda.grid(1)
    if row < x.shape[0] * count:
        sample, i = row // count, row % count
        total = np.float32(0.0)
        for k in range(depth):
            at = i * outer + k * inner
            total += grad[sample, at] * x[sample, at]
        scale = inverse_norm[sample, i]
        unclamped = np.float32(1.0) if squares[sample, i] > epsilon else np.float32(0.0)
        projection = total * (scale * scale * scale) * unclamped
        for k in range(depth):
            at = i * outer + k * inner
            dx[sample, at] = grad[sample, at] * scale - x[sample, at] * projection


def l2_normalize_backward(grad, x, inverse_norm, squares, strides, count, depth, epsilon, dx):
    """The gradient through l2_normalize (x the input, grad the gradient of its output), as the CPU's:

        r = inverse_norm;  dx = r·grad − x · Σ_k(grad·x) · r³ · [squares > ε]

    (where the clamp holds, r is a constant). Arrays as l2_normalize's."""
    _l2_normalize_backward[on(*grid1(x.shape[0] * count))](grad, x, inverse_norm, squares, strides[0], strides[1],
                                                           count, depth, np.float32(epsilon), dx)


@cuda.jit(**KERNEL)
def _combine_masks(a, b, both, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = (a[i] & b[i]) if both else (a[i] | b[i])


def combine_masks(a, b, both, out):
    """out = a AND b (`both`: an element-wise merge's masks) or a OR b (Concatenate along the features); 1-D uint8
    masks of 0 and 1 (out may be a)."""
    _combine_masks[on(*grid1(out.shape[0]))](a, b, bool(both), out)


KERNELS = ("strided_matmul", "l2_normalize", "l2_normalize_backward", "combine_masks")
