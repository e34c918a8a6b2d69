"""CPU kernels of the normalization layer family (Numba `@njit`, cached); `KERNELS` names the ones the backend exports.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_normalization.py.
"""

import math

import numpy as np
from numba import njit, prange

from nnctl.engine.denormals import flush_bits, swap_flush_bits
from nnctl.engine.settings import STRICT_KERNEL

# Every kernel sees a 2-D (rows, channels) view, channels innermost: the layer moves the normalized axes last.
# Reductions over rows go through fixed chunks of rows (their size depends only on the channel count), each
# summed in float64, then the chunks are added in order: the same bytes on any thread count. Both layers run in
# strict IEEE arithmetic (no reassociation, no FMA contraction; the sums vectorize across channels without it),
# so the `_split` twins, which run the same helpers from another compiled context, cannot round differently (see
# settings.STRICT_KERNEL). LayerNormalization ran with reassociation until session 12, when its whole and split
# backward gave other bytes in one CI run (two processes were filling one kernel cache at once) and once in a
# fresh process of their own; it did not recur, but reassociation leaves the order of a sum to the compiler.
CHUNK_ELEMENTS = 1 << 14
STRICT_PARALLEL_KERNEL = {**STRICT_KERNEL, "parallel": True}


@njit(**STRICT_KERNEL)
def chunk_rows(channels):
    """Rows per reduction chunk: about CHUNK_ELEMENTS values (64 KiB of float32), at least one row."""
    return max(1, CHUNK_ELEMENTS // max(1, channels))


@njit(**STRICT_KERNEL)
def _chunk_count(rows, channels):
    step = chunk_rows(channels)
    return (rows + step - 1) // step


@njit(**STRICT_KERNEL)
def _shifted_sums(x, shift, first, last, partial):
    """For each chunk k in first..last-1 (its rows r), in float64: partial[k, 0, c] = Σ_r (x[r, c] − shift[c])
    and partial[k, 1, c] = Σ_r (x[r, c] − shift[c])²."""
    rows, channels = x.shape
    step = chunk_rows(channels)
    for k in range(first, last):
        sums, squares = partial[k, 0], partial[k, 1]
        sums[:] = 0.0
        squares[:] = 0.0
        for r in range(k * step, min(rows, (k + 1) * step)):
            for c in range(channels):
                v = np.float64(x[r, c]) - shift[c]
                sums[c] += v
                squares[c] += v * v


@njit(**STRICT_KERNEL)
def _add_chunks(partial, out):
    """out[i, c] = Σ_k partial[k, i, c], k ascending (the fixed order)."""
    out[:] = 0.0
    for k in range(partial.shape[0]):
        for i in range(partial.shape[1]):
            for c in range(partial.shape[2]):
                out[i, c] += partial[k, i, c]


@njit(**STRICT_KERNEL)
def _batch_moments(x, partial, shift, momentum, epsilon, moving_mean, moving_variance, mean, inv_std):
    """Batch mean and 1/sqrt(biased variance + ε) from the chunk sums of x − shift; moving statistics updated."""
    rows = x.shape[0]
    totals = np.empty((2, x.shape[1]))
    _add_chunks(partial, totals)
    for c in range(x.shape[1]):
        centered_mean = totals[0, c] / rows
        variance = max(totals[1, c] / rows - centered_mean * centered_mean, 0.0)
        mean[c] = shift[c] + centered_mean
        inv_std[c] = 1.0 / math.sqrt(variance + epsilon)
        moving_mean[c] = moving_mean[c] * momentum + mean[c] * (1.0 - momentum)
        moving_variance[c] = moving_variance[c] * momentum + variance * (1.0 - momentum)


@njit(**STRICT_KERNEL)
def _affine(x, mean, scale, beta, r0, r1, y):
    """y[r, c] = (x[r, c] − mean[c])·scale[c] + beta[c] for rows r0..r1-1, in x's type (float32: ~15 % faster
    than float64, and nothing cancels here)."""
    m, sc, b = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
    for c in range(x.shape[1]):  # element by element: array assignment took 1.6 s more to compile
        m[c], sc[c], b[c] = mean[c], scale[c], beta[c]
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            y[r, c] = (x[r, c] - m[c]) * sc[c] + b[c]


@njit(**STRICT_KERNEL)
def _scale(inv_std, gamma):
    """inv_std·gamma, element by element (an array expression compiles NumPy's broadcasting: +1.5 s cold)."""
    scale = np.empty(inv_std.shape[0])
    for c in range(inv_std.shape[0]):
        scale[c] = inv_std[c] * gamma[c]
    return scale


@njit(**STRICT_KERNEL)
def _first_row(x):
    """Each channel's first value: a shift that keeps Σ(x − shift)² from cancelling when |mean| ≫ std."""
    shift = np.zeros(x.shape[1])
    if x.shape[0] > 0:
        for c in range(x.shape[1]):
            shift[c] = x[0, c]
    return shift


@njit(**STRICT_KERNEL)
def batch_norm_forward(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y):
    """BatchNormalization in training. x, y: (rows, channels); gamma, beta, moving_*: (channels,), the moving
    ones updated in place; mean, inv_std: (channels,) float64, written for the backward pass.

        mean[c] = Σ_r x[r, c] / rows;  var[c] = Σ_r (x[r, c] − mean[c])² / rows   (biased, as Keras)
        inv_std[c] = 1/sqrt(var[c] + ε);  y[r, c] = (x[r, c] − mean[c])·inv_std[c]·gamma[c] + beta[c]
        moving_mean = moving_mean·momentum + mean·(1 − momentum)   (moving_variance likewise with var)
    """
    chunks = _chunk_count(x.shape[0], x.shape[1])
    partial = np.empty((chunks, 2, x.shape[1]))
    shift = _first_row(x)
    _shifted_sums(x, shift, 0, chunks, partial)
    _batch_moments(x, partial, shift, momentum, epsilon, moving_mean, moving_variance, mean, inv_std)
    _affine(x, mean, _scale(inv_std, gamma), beta, 0, x.shape[0], y)


@njit(**STRICT_PARALLEL_KERNEL)
def batch_norm_forward_split(x, gamma, beta, momentum, epsilon, moving_mean, moving_variance, mean, inv_std, y,
                             parts):
    """batch_norm_forward with its two passes over x cut into `parts` ranges of chunks, one per thread."""
    rows, channels = x.shape
    chunks = _chunk_count(rows, channels)
    step = chunk_rows(channels)
    partial = np.empty((chunks, 2, channels))
    shift, bits = _first_row(x), flush_bits()
    for part in prange(parts):
        old = swap_flush_bits(bits)  # each thread computes under the caller's denormal mode (denormals.py)
        _shifted_sums(x, shift, part * chunks // parts, (part + 1) * chunks // parts, partial)
        swap_flush_bits(old)
    _batch_moments(x, partial, shift, momentum, epsilon, moving_mean, moving_variance, mean, inv_std)
    scale = _scale(inv_std, gamma)
    for part in prange(parts):
        old = swap_flush_bits(bits)
        _affine(x, mean, scale, beta, min(rows, part * chunks // parts * step),
                min(rows, (part + 1) * chunks // parts * step), y)
        swap_flush_bits(old)


@njit(**STRICT_KERNEL)
def _batch_input_grad(dy, x, mean, a, c1, c2, r0, r1, dx):
    """dx[r, c] = a[c]·dy[r, c] − c1[c] − (x[r, c] − mean[c])·c2[c] for rows r0..r1-1, in float64: the terms
    nearly cancel where dy is almost linear in x̂ (float32 lost 3 of its 7 digits there)."""
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            dx[r, c] = a[c] * np.float64(dy[r, c]) - c1[c] - (np.float64(x[r, c]) - mean[c]) * c2[c]


@njit(**STRICT_KERNEL)
def _dy_x_sums(dy, x, mean, first, last, partial):
    """For each chunk k in first..last-1 (its rows r): partial[k, 0, c] = Σ_r dy[r, c] and
    partial[k, 1, c] = Σ_r dy[r, c]·(x[r, c] − mean[c]), in float64."""
    rows, channels = x.shape
    step = chunk_rows(channels)
    for k in range(first, last):
        sums, products = partial[k, 0], partial[k, 1]
        sums[:] = 0.0
        products[:] = 0.0
        for r in range(k * step, min(rows, (k + 1) * step)):
            for c in range(channels):
                g = np.float64(dy[r, c])
                sums[c] += g
                products[c] += g * (np.float64(x[r, c]) - mean[c])


@njit(**STRICT_KERNEL)
def _batch_grad_terms(partial, rows, gamma, inv_std, dgamma, dbeta):
    """dgamma, dbeta from the chunk sums of dy and dy·(x − mean); returns dx's per-channel terms (a, c1, c2)."""
    channels = gamma.shape[0]
    totals = np.empty((2, channels))
    _add_chunks(partial, totals)
    a, c1, c2 = np.empty(channels), np.empty(channels), np.empty(channels)
    for c in range(channels):
        dbeta_c, dgamma_c = totals[0, c], totals[1, c] * inv_std[c]
        dbeta[c], dgamma[c] = dbeta_c, dgamma_c
        a[c] = np.float64(gamma[c]) * inv_std[c]
        c1[c] = a[c] * dbeta_c / rows
        c2[c] = a[c] * inv_std[c] * dgamma_c / rows
    return a, c1, c2


@njit(**STRICT_KERNEL)
def batch_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    """BatchNormalization's backward pass through the batch statistics. dy, x, dx: (rows, channels); gamma,
    dgamma, dbeta: (channels,); mean, inv_std: (channels,) float64 from batch_norm_forward. With `input_grad`
    False dx is not written.

        dbeta[c] = Σ_r dy[r, c];  dgamma[c] = Σ_r dy[r, c]·x̂[r, c]   with x̂ = (x − mean)·inv_std
        dx[r, c] = gamma[c]·inv_std[c]·(dy[r, c] − dbeta[c]/rows − x̂[r, c]·dgamma[c]/rows)
    """
    rows, channels = x.shape
    chunks = _chunk_count(rows, channels)
    partial = np.empty((chunks, 2, channels))
    _dy_x_sums(dy, x, mean, 0, chunks, partial)
    a, c1, c2 = _batch_grad_terms(partial, rows, gamma, inv_std, dgamma, dbeta)
    if input_grad:
        _batch_input_grad(dy, x, mean, a, c1, c2, 0, rows, dx)


@njit(**STRICT_PARALLEL_KERNEL)
def batch_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    """batch_norm_backward with its two passes cut into `parts` ranges of chunks, one per thread."""
    rows, channels = x.shape
    chunks = _chunk_count(rows, channels)
    step = chunk_rows(channels)
    partial, bits = np.empty((chunks, 2, channels)), flush_bits()
    for part in prange(parts):
        old = swap_flush_bits(bits)
        _dy_x_sums(dy, x, mean, part * chunks // parts, (part + 1) * chunks // parts, partial)
        swap_flush_bits(old)
    a, c1, c2 = _batch_grad_terms(partial, rows, gamma, inv_std, dgamma, dbeta)
    if input_grad:
        for part in prange(parts):
            old = swap_flush_bits(bits)
            _batch_input_grad(dy, x, mean, a, c1, c2, min(rows, part * chunks // parts * step),
                              min(rows, (part + 1) * chunks // parts * step), dx)
            swap_flush_bits(old)


@njit(**STRICT_KERNEL)
def batch_norm_inference(x, gamma, beta, moving_mean, moving_variance, epsilon, y):
    """BatchNormalization in inference (and whenever the layer is frozen): the moving statistics.
    x, y: (rows, channels); the others (channels,).

        y[r, c] = (x[r, c] − moving_mean[c])·gamma[c]/sqrt(moving_variance[c] + ε) + beta[c]
    """
    channels = x.shape[1]
    mean, scale = np.empty(channels), np.empty(channels)
    for c in range(channels):
        mean[c] = moving_mean[c]
        scale[c] = np.float64(gamma[c]) / math.sqrt(np.float64(moving_variance[c]) + epsilon)
    _affine(x, mean, scale, beta, 0, x.shape[0], y)


@njit(**STRICT_KERNEL)
def batch_norm_inference_backward(dy, gamma, moving_variance, epsilon, dx):
    """The input gradient of batch_norm_inference (a frozen layer's). dy, dx: (rows, channels).

        dx[r, c] = dy[r, c]·gamma[c]/sqrt(moving_variance[c] + ε)
    """
    channels = dy.shape[1]
    scale = np.empty(channels)
    for c in range(channels):
        scale[c] = np.float64(gamma[c]) / math.sqrt(np.float64(moving_variance[c]) + epsilon)
    for r in range(dy.shape[0]):
        for c in range(channels):
            dx[r, c] = np.float64(dy[r, c]) * scale[c]


# LayerNormalization reduces along each row, where strict arithmetic cannot vectorize (4× slower than
# PyTorch): its kernels reassociate the row sums (settings.KERNEL). A row's bytes then depend on the compiled
# loop, never on the thread count: the split twins run the same helpers over other rows (a test checks it).
@njit(**STRICT_KERNEL)
def _row_moments(x, r, epsilon):
    """(mean, 1/sqrt(biased variance + ε)) of row r, two passes in float64 (the row stays in cache)."""
    width = x.shape[1]
    total = 0.0
    for j in range(width):
        total += x[r, j]
    mean = total / width
    squares = 0.0
    for j in range(width):
        v = np.float64(x[r, j]) - mean
        squares += v * v
    return mean, 1.0 / math.sqrt(squares / width + epsilon)


@njit(**STRICT_KERNEL)
def _layer_norm_rows(x, gamma, beta, epsilon, r0, r1, mean, inv_std, y):
    row_scalars = np.empty(2, x.dtype)  # mean and 1/std in x's type, so the element-wise pass stays in it
    for r in range(r0, r1):
        m, s = _row_moments(x, r, epsilon)
        mean[r], inv_std[r] = m, s
        row_scalars[0], row_scalars[1] = m, s
        m_x, s_x = row_scalars[0], row_scalars[1]
        for j in range(x.shape[1]):
            y[r, j] = (x[r, j] - m_x) * s_x * gamma[j] + beta[j]


@njit(**STRICT_KERNEL)
def layer_norm_forward(x, gamma, beta, epsilon, mean, inv_std, y):
    """LayerNormalization. x, y: (rows, width), one sample's normalized values per row; gamma, beta: (width,);
    mean, inv_std: (rows,) float64, written for the backward pass.

        mean[r] = Σ_j x[r, j] / width;  var[r] = Σ_j (x[r, j] − mean[r])² / width
        inv_std[r] = 1/sqrt(var[r] + ε);  y[r, j] = (x[r, j] − mean[r])·inv_std[r]·gamma[j] + beta[j]
    """
    _layer_norm_rows(x, gamma, beta, epsilon, 0, x.shape[0], mean, inv_std, y)


@njit(**STRICT_PARALLEL_KERNEL)
def layer_norm_forward_split(x, gamma, beta, epsilon, mean, inv_std, y, parts):
    """layer_norm_forward with the rows cut into `parts` contiguous ranges, one per thread."""
    rows, bits = x.shape[0], flush_bits()
    for part in prange(parts):
        old = swap_flush_bits(bits)
        _layer_norm_rows(x, gamma, beta, epsilon, part * rows // parts, (part + 1) * rows // parts, mean, inv_std, y)
        swap_flush_bits(old)


@njit(**STRICT_KERNEL)
def _layer_norm_grad_chunks(dy, x, gamma, mean, inv_std, input_grad, first, last, partial, dx):
    """Chunks first..last-1 of rows: their dx rows and partial[k] = (Σ_r dy[r], Σ_r dy[r]·x̂[r]) in float64."""
    rows, width = x.shape
    step = chunk_rows(width)
    row_scalars = np.empty(4, x.dtype)  # dx's per-row terms in x's type, so its pass stays in that type
    for k in range(first, last):
        sums, products = partial[k, 0], partial[k, 1]
        sums[:] = 0.0
        products[:] = 0.0
        for r in range(k * step, min(rows, (k + 1) * step)):
            m, s = mean[r], inv_std[r]
            g_sum, gx_sum = 0.0, 0.0
            for j in range(width):
                g = np.float64(dy[r, j])
                xhat = (np.float64(x[r, j]) - m) * s
                sums[j] += g
                products[j] += g * xhat
                g_sum += g * gamma[j]
                gx_sum += g * gamma[j] * xhat
            if input_grad:
                row_scalars[0], row_scalars[1] = m, s
                row_scalars[2], row_scalars[3] = g_sum / width, gx_sum / width
                m_x, s_x, g_mean, gx_mean = row_scalars[0], row_scalars[1], row_scalars[2], row_scalars[3]
                for j in range(width):
                    dx[r, j] = s_x * (dy[r, j] * gamma[j] - g_mean - (x[r, j] - m_x) * s_x * gx_mean)


@njit(**STRICT_KERNEL)
def _finish_param_grads(partial, dgamma, dbeta):
    totals = np.empty((2, dgamma.shape[0]))
    _add_chunks(partial, totals)
    for j in range(dgamma.shape[0]):
        dbeta[j], dgamma[j] = totals[0, j], totals[1, j]


@njit(**STRICT_KERNEL)
def layer_norm_backward(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx):
    """LayerNormalization's backward pass. dy, x, dx: (rows, width); gamma, dgamma, dbeta: (width,); mean,
    inv_std: (rows,) float64 from layer_norm_forward. With `input_grad` False dx is not written.

        x̂ = (x − mean)·inv_std;  dbeta[j] = Σ_r dy[r, j];  dgamma[j] = Σ_r dy[r, j]·x̂[r, j]
        g = dy·gamma;  dx[r, j] = inv_std[r]·(g[r, j] − mean_j g[r] − x̂[r, j]·mean_j (g·x̂)[r])
    """
    chunks = _chunk_count(x.shape[0], x.shape[1])
    partial = np.empty((chunks, 2, x.shape[1]))
    _layer_norm_grad_chunks(dy, x, gamma, mean, inv_std, input_grad, 0, chunks, partial, dx)
    _finish_param_grads(partial, dgamma, dbeta)


@njit(**STRICT_PARALLEL_KERNEL)
def layer_norm_backward_split(dy, x, gamma, mean, inv_std, dgamma, dbeta, input_grad, dx, parts):
    """layer_norm_backward with the chunks of rows cut into `parts` contiguous ranges, one per thread."""
    chunks = _chunk_count(x.shape[0], x.shape[1])
    partial, bits = np.empty((chunks, 2, x.shape[1])), flush_bits()
    for part in prange(parts):
        old = swap_flush_bits(bits)
        _layer_norm_grad_chunks(dy, x, gamma, mean, inv_std, input_grad, part * chunks // parts,
                                (part + 1) * chunks // parts, partial, dx)
        swap_flush_bits(old)
    _finish_param_grads(partial, dgamma, dbeta)


KERNELS = (
    "batch_norm_forward", "batch_norm_forward_split", "batch_norm_backward", "batch_norm_backward_split",
    "batch_norm_inference", "batch_norm_inference_backward",
    "layer_norm_forward", "layer_norm_forward_split", "layer_norm_backward", "layer_norm_backward_split",
)
