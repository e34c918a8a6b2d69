"""CUDA twins of nnctl/engine/cpu/normalization.py: BatchNormalization (training and inference, forward and
backward) and LayerNormalization, on (rows, channels) views — same names and arguments as the CPU kernels.

Statistics are float64, two passes (mean, then squared deviations): one thread per channel (batch norm) or per
row (layer norm) walking its values in order — or, for a channel past columns.SHORT rows (a convolution's output:
every pixel of the batch; a Dense layer's batch of more than 64), columns.py's blocks of chunks and lanes, in a
fixed tree; the parameter gradients' sums down the rows likewise. Element-wise work is one thread an element.
The `_split` forms take the CPU's `parts` and compute the same.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cuda import columns
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, scratch, wide


@cuda.jit(device=True)
def _store_moments(c, m, variance, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    mean[c] = m
    inv_std[c] = 1.0 / math.sqrt(variance + epsilon)
    moving_mean[c] = moving_mean[c] * momentum + m * (1.0 - momentum)
    moving_variance[c] = moving_variance[c] * momentum + variance * (1.0 - momentum)


@cuda.jit(**KERNEL)
def _channel_moments(x, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    c = cuda.grid(1)
    if c < x.shape[1]:
        rows = x.shape[0]
        total = 0.0
        for r in range(rows):
            total += x[r, c]
        m = total / rows
        squares = 0.0
        for r in range(rows):
            d = x[r, c] - m
            squares += d * d
        _store_moments(c, m, squares / rows, momentum, epsilon, moving_mean, moving_variance, mean, inv_std)


@wide(columns.BLOCK_THREADS)
def _finish_moments(parts, center, rows, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    """A tall channel's moments from its squared deviations' chunk sums (columns.py) and its mean, `center`."""
    c, squares, _ = columns.chunks_total(parts, False)
    if cuda.threadIdx.y == 0 and c < center.shape[0]:
        _store_moments(c, center[c], squares / rows, momentum, epsilon, moving_mean, moving_variance, mean,
                       inv_std)


def _moments(x, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    """The batch's mean and (biased, as Keras) variance per channel, and the moving averages."""
    rows, channels = x.shape
    if not columns.tall(rows, columns.SHORT):
        _channel_moments[on(*grid1(channels))](x, momentum, epsilon, moving_mean, moving_variance, mean, inv_std)
        return
    center = scratch("channel centers", channels, np.float64)
    columns.column_sums(x, center, rows)
    parts = columns.deviation_chunks(x, center)
    _finish_moments[columns.last(parts)](parts, center, rows, momentum, epsilon, moving_mean, moving_variance, mean,
                                         inv_std)


@cuda.jit(**KERNEL)
def _affine_channels(x, mean, inv_std, gamma, beta, y):
    c, row0, row_step = cells()
    if c < x.shape[1]:
        for r in range(row0, x.shape[0], row_step):
            y[r, c] = (x[r, c] - mean[c]) * inv_std[c] * gamma[c] + beta[c]


def batch_norm_forward(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y):
    """Training mode: the batch's mean and (biased) variance per channel, y = x̂·γ + β, moving averages."""
    _moments(x, float(momentum), float(epsilon), moving_mean, moving_variance, mean, inv_std)
    _affine_channels[on(*grid2(*x.shape))](x, mean, inv_std, gamma, beta, y)


def batch_norm_forward_split(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y,
                             parts):
    batch_norm_forward(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y)


@cuda.jit(**KERNEL)
def _channel_grads(dy, x, mean, inv_std, dgamma, dbeta, sum_dy, sum_dy_xhat):
    c = cuda.grid(1)
    if c < x.shape[1]:
        total = 0.0
        weighted = 0.0
        for r in range(x.shape[0]):
            g = dy[r, c]
            total += g
            weighted += g * (x[r, c] - mean[c]) * inv_std[c]
        dbeta[c] = total
        dgamma[c] = weighted
        sum_dy[c] = total
        sum_dy_xhat[c] = weighted


@wide(columns.BLOCK_THREADS)
def _grad_chunks(dy, x, mean, inv_std, rows, parts):
    """Σ dy and Σ dy·x̂ over a tall column's chunks (columns.py): x̂ by the column's statistics (BatchNorm's
    channels), or with `rows` by each row's (LayerNorm's parameter gradients)."""
    c, first, stop = columns.rows_of(x)
    total = 0.0
    weighted = 0.0
    if c < x.shape[1]:
        for r in range(first, stop, columns.LANES):
            k = r if rows else c
            g = dy[r, c]
            total += g
            weighted += g * (x[r, c] - mean[k]) * inv_std[k]
    columns.place_chunk(total, weighted, parts)


@cuda.jit(**KERNEL)
def _batch_input_grad(dy, x, gamma, mean, inv_std, sum_dy, sum_dy_xhat, dx):
    c, row0, row_step = cells()
    if c < x.shape[1]:
        for r in range(row0, x.shape[0], row_step):
            rows = x.shape[0]
            xhat = (x[r, c] - mean[c]) * inv_std[c]
            dx[r, c] = gamma[c] * inv_std[c] * (dy[r, c] - sum_dy[c] / rows - xhat * sum_dy_xhat[c] / rows)


def batch_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    """dγ, dβ, and (when `input_grad`) dx through the batch statistics."""
    channels = x.shape[1]
    sums = scratch("channel sums", 2 * channels, np.float64, shape=(2, channels))  # (no allocation a step)
    if columns.tall(x.shape[0], columns.SHORT):
        blocks, threads, chunks = columns.geometry(*x.shape)
        parts = columns.partials(chunks, channels)
        _grad_chunks[on(blocks, threads)](dy, x, mean, inv_std, False, parts)
        columns.finish_pairs(parts, dbeta, dgamma, sums[0], sums[1])
    else:
        _channel_grads[on(*grid1(channels))](dy, x, mean, inv_std, dgamma, dbeta, sums[0], sums[1])
    if input_grad:
        _batch_input_grad[on(*grid2(*x.shape))](dy, x, gamma, mean, inv_std, sums[0], sums[1], dx)


def batch_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    batch_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx)


@cuda.jit(**KERNEL)
def _inference(x, gamma, beta, moving_mean, moving_variance, epsilon, y):
    c, row0, row_step = cells()
    if c < x.shape[1]:
        for r in range(row0, x.shape[0], row_step):
            y[r, c] = (x[r, c] - moving_mean[c]) / math.sqrt(moving_variance[c] + epsilon) * gamma[c] + beta[c]


def batch_norm_inference(x, gamma, beta, moving_mean, moving_variance, epsilon, y):
    """Inference mode: y = (x − moving mean) / √(moving variance + ε)·γ + β."""
    _inference[on(*grid2(*x.shape))](x, gamma, beta, moving_mean, moving_variance, float(epsilon), y)


@cuda.jit(**KERNEL)
def _inference_backward(dy, gamma, moving_variance, epsilon, dx):
    c, row0, row_step = cells()
    if c < dy.shape[1]:
        for r in range(row0, dy.shape[0], row_step):
            dx[r, c] = dy[r, c] * gamma[c] / math.sqrt(moving_variance[c] + epsilon)


def batch_norm_inference_backward(dy, gamma, moving_variance, epsilon, dx):
    _inference_backward[on(*grid2(*dy.shape))](dy, gamma, moving_variance, float(epsilon), dx)


@cuda.jit(**KERNEL)
def _row_moments(x, epsilon, mean, inv_std):
    r = cuda.grid(1)
    if r < x.shape[0]:
        width = x.shape[1]
        total = 0.0
        for c in range(width):
            total += x[r, c]
        m = total / width
        squares = 0.0
        for c in range(width):
            d = x[r, c] - m
            squares += d * d
        mean[r] = m
        inv_std[r] = 1.0 / math.sqrt(squares / width + epsilon)


@cuda.jit(**KERNEL)
def _affine_rows(x, mean, inv_std, gamma, beta, y):
    c, row0, row_step = cells()
    if c < x.shape[1]:
        for r in range(row0, x.shape[0], row_step):
            y[r, c] = (x[r, c] - mean[r]) * inv_std[r] * gamma[c] + beta[c]


def layer_norm_forward(x, gamma, beta, epsilon, mean, inv_std, y):
    """Each row normalized by its own mean and variance, then y = x̂·γ + β."""
    _row_moments[on(*grid1(x.shape[0]))](x, float(epsilon), mean, inv_std)
    _affine_rows[on(*grid2(*x.shape))](x, mean, inv_std, gamma, beta, y)


def layer_norm_forward_split(x, gamma, beta, epsilon, mean, inv_std, y, parts):
    layer_norm_forward(x, gamma, beta, epsilon, mean, inv_std, y)


@cuda.jit(**KERNEL)
def _layer_param_grads(dy, x, mean, inv_std, dgamma, dbeta):
    c = cuda.grid(1)
    if c < x.shape[1]:
        total = 0.0
        weighted = 0.0
        for r in range(x.shape[0]):
            total += dy[r, c]
            weighted += dy[r, c] * (x[r, c] - mean[r]) * inv_std[r]
        dbeta[c] = total
        dgamma[c] = weighted


@cuda.jit(**KERNEL)
def _layer_input_grad(dy, x, gamma, mean, inv_std, dx):
    r = cuda.grid(1)
    if r < x.shape[0]:
        width = x.shape[1]
        mean_g = 0.0
        mean_gx = 0.0
        for c in range(width):
            g = dy[r, c] * gamma[c]
            mean_g += g
            mean_gx += g * (x[r, c] - mean[r]) * inv_std[r]
        mean_g /= width
        mean_gx /= width
        for c in range(width):
            xhat = (x[r, c] - mean[r]) * inv_std[r]
            dx[r, c] = inv_std[r] * (dy[r, c] * gamma[c] - mean_g - xhat * mean_gx)


def layer_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    """dγ, dβ, and (when `input_grad`) dx through each row's statistics."""
    if columns.tall(x.shape[0], columns.SHORT):
        blocks, threads, chunks = columns.geometry(*x.shape)
        parts = columns.partials(chunks, x.shape[1])
        _grad_chunks[on(blocks, threads)](dy, x, mean, inv_std, True, parts)
        columns.finish_pairs(parts, dbeta, dgamma, dbeta, dgamma)
    else:
        _layer_param_grads[on(*grid1(x.shape[1]))](dy, x, mean, inv_std, dgamma, dbeta)
    if input_grad:
        _layer_input_grad[on(*grid1(x.shape[0]))](dy, x, gamma, mean, inv_std, dx)


def layer_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    layer_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx)


KERNELS = ("batch_norm_forward", "batch_norm_forward_split", "batch_norm_backward", "batch_norm_backward_split",
           "batch_norm_inference", "batch_norm_inference_backward", "layer_norm_forward", "layer_norm_forward_split",
           "layer_norm_backward", "layer_norm_backward_split")
