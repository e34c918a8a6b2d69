"""Dense-layer kernels: fused bias + activation forward/backward, small GEMMs, row gather, dropout.

Large GEMMs go through NumPy's BLAS (see `nnctl.engine.backend`); the loops here serve small layers.
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.settings import KERNEL

LINEAR, RELU, SIGMOID, TANH, SOFTMAX, ELU, LEAKY_RELU, SOFTPLUS, GELU = range(9)
ACTIVATION_CODES = {
    "linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX,
    "elu": ELU, "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "gelu": GELU,
}
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@njit(**KERNEL)
def _sigmoid(v):
    # Two branches so exp never overflows: exp(-v) for v ≥ 0, exp(v) otherwise.
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(**KERNEL)
def bias_act_forward(z, bias, act, alpha, y):
    """z += bias (broadcast over rows), then y = act(z); z keeps the pre-activation for backward.

    z, y: (n, units) float32 (y may be z itself for `linear`); bias: (units,); act: ACTIVATION_CODES
    value; alpha: ELU alpha / leaky-ReLU negative slope.
        for i, j: z[i, j] += bias[j]; y[i, j] = act(z[i, j])      (softmax: over each row)
    """
    n, units = z.shape
    for i in range(n):
        for j in range(units):
            z[i, j] += bias[j]
    # One loop per activation so each inner loop is branch-free and vectorizes.
    if act == LINEAR:
        for i in range(n):  # harmless when y is z
            for j in range(units):
                y[i, j] = z[i, j]
    elif act == RELU:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                y[i, j] = v if v > 0 else 0.0
    elif act == SIGMOID:
        for i in range(n):
            for j in range(units):
                y[i, j] = _sigmoid(z[i, j])
    elif act == TANH:
        for i in range(n):
            for j in range(units):
                y[i, j] = math.tanh(z[i, j])
    elif act == SOFTMAX:
        for i in range(n):
            top = z[i, 0]
            for j in range(1, units):
                top = max(top, z[i, j])
            total = 0.0
            for j in range(units):
                e = math.exp(z[i, j] - top)
                y[i, j] = e
                total += e
            inv = 1.0 / total
            for j in range(units):
                y[i, j] *= inv
    elif act == ELU:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                y[i, j] = v if v > 0 else alpha * math.expm1(v)
    elif act == LEAKY_RELU:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                y[i, j] = v if v > 0 else alpha * v
    elif act == SOFTPLUS:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                y[i, j] = max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    elif act == GELU:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                y[i, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@njit(**KERNEL)
def bias_act_backward(dy, z, y, act, alpha, dz, db):
    """dz = dy * act'(z) and db = column sums of dz, in one pass.

    dy, z, y, dz: (n, units); db: (units,) overwritten. dz may be dy itself (in place).
        for i, j: dz[i, j] = dy[i, j] * act'(z[i, j]); db[j] += dz[i, j]
    softmax: dz[i, j] = y[i, j] * (dy[i, j] - sum_k dy[i, k] * y[i, k]).
    """
    n, units = dy.shape
    if act == LINEAR:
        for i in range(n):
            for j in range(units):
                dz[i, j] = dy[i, j]
    elif act == RELU:
        for i in range(n):
            for j in range(units):
                dz[i, j] = dy[i, j] if z[i, j] > 0 else 0.0
    elif act == SIGMOID:
        for i in range(n):
            for j in range(units):
                s = y[i, j]
                dz[i, j] = dy[i, j] * s * (1.0 - s)
    elif act == TANH:
        for i in range(n):
            for j in range(units):
                t = y[i, j]
                dz[i, j] = dy[i, j] * (1.0 - t * t)
    elif act == SOFTMAX:
        for i in range(n):
            inner = 0.0
            for j in range(units):
                inner += dy[i, j] * y[i, j]
            for j in range(units):
                dz[i, j] = y[i, j] * (dy[i, j] - inner)
    elif act == ELU:
        for i in range(n):
            for j in range(units):
                dz[i, j] = dy[i, j] if z[i, j] > 0 else dy[i, j] * (y[i, j] + alpha)
    elif act == LEAKY_RELU:
        for i in range(n):
            for j in range(units):
                dz[i, j] = dy[i, j] if z[i, j] > 0 else dy[i, j] * alpha
    elif act == SOFTPLUS:
        for i in range(n):
            for j in range(units):
                dz[i, j] = dy[i, j] * _sigmoid(z[i, j])
    elif act == GELU:
        for i in range(n):
            for j in range(units):
                v = z[i, j]
                cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
                dz[i, j] = dy[i, j] * (cdf + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))
    db[:] = 0.0
    for i in range(n):
        for j in range(units):
            db[j] += dz[i, j]


# Below this many output columns the inner loops below would be too short to vectorize, so the small-n
# variants loop over the other axis instead (the Boston MLP's 1-unit output layer).
_NARROW = 8


@njit(**KERNEL)
def matmul(a, b, out):
    """out = a @ b for small operands. a: (m, k), b: (k, n), out: (m, n).

        for rows i..i+3: out[i.., :] = Σ_p a[i.., p] * b[p, :]   (4 rows share each load of b[p, :])
    """
    m, k = a.shape
    n = b.shape[1]
    if n < _NARROW:
        for i in range(m):
            for j in range(n):
                total = np.float32(0.0)
                for p in range(k):
                    total += a[i, p] * b[p, j]
                out[i, j] = total
        return
    i = 0
    while i + 4 <= m:
        for j in range(n):
            out[i, j] = 0.0
            out[i + 1, j] = 0.0
            out[i + 2, j] = 0.0
            out[i + 3, j] = 0.0
        for p in range(k):
            a0, a1, a2, a3 = a[i, p], a[i + 1, p], a[i + 2, p], a[i + 3, p]
            for j in range(n):
                bj = b[p, j]
                out[i, j] += a0 * bj
                out[i + 1, j] += a1 * bj
                out[i + 2, j] += a2 * bj
                out[i + 3, j] += a3 * bj
        i += 4
    for r in range(i, m):
        for j in range(n):
            out[r, j] = 0.0
        for p in range(k):
            arp = a[r, p]
            for j in range(n):
                out[r, j] += arp * b[p, j]


@njit(**KERNEL)
def matmul_tn(a, b, out):
    """out = aᵀ @ b (the weight gradient xᵀ·dz). a: (m, k), b: (m, n), out: (k, n).

        out = 0; for i, p: out[p, :] += a[i, p] * b[i, :]     (narrow n: for j, i: out[:, j] += b[i, j]·a[i, :])
    """
    m, k = a.shape
    n = b.shape[1]
    out[:, :] = 0.0
    if n < _NARROW:
        for j in range(n):
            for i in range(m):
                bij = b[i, j]
                for p in range(k):
                    out[p, j] += a[i, p] * bij
        return
    for i in range(m):
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[p, j] += aip * b[i, j]


@njit(**KERNEL)
def matmul_nt(a, b, out):
    """out = a @ bᵀ (the input gradient dz·Wᵀ). a: (m, n), b: (k, n), out: (m, k).

        for i, p: out[i, p] = Σ_j a[i, j] * b[p, j]     (narrow n: out[i, :] += a[i, j]·b[:, j])
    """
    m, n = a.shape
    k = b.shape[0]
    if n < _NARROW:
        for i in range(m):
            for p in range(k):
                out[i, p] = 0.0
            for j in range(n):
                aij = a[i, j]
                for p in range(k):
                    out[i, p] += aij * b[p, j]
        return
    for i in range(m):
        for p in range(k):
            total = np.float32(0.0)  # float32 accumulation, as BLAS sgemm does
            for j in range(n):
                total += a[i, j] * b[p, j]
            out[i, p] = total


@njit(**KERNEL)
def take_rows(x, rows, out):
    """out[b, :] = x[rows[b], :] — gathers a shuffled batch. x: (N, d), rows: (m,), out: (m, d)."""
    # Element loops rather than slice assignment: Numba's broadcasting setitem costs ~1.7 s of compilation.
    for b in range(rows.shape[0]):
        r = rows[b]
        for j in range(out.shape[1]):
            out[b, j] = x[r, j]


@njit(**KERNEL)
def dropout_forward(x, uniform, rate, y, mask):
    """Inverted dropout: mask = (uniform ≥ rate) / (1 − rate); y = x * mask. All arrays 1-D, same size.

    `uniform` comes from the run's seeded generator, so masks are reproducible.
    """
    scale = np.float32(1.0 / (1.0 - rate))
    for i in range(x.shape[0]):
        keep = uniform[i] >= rate
        mask[i] = scale if keep else 0.0
        y[i] = x[i] * mask[i]


@njit(**KERNEL)
def multiply(a, b, out):
    """out = a * b elementwise (dropout's backward: dx = dy * mask). All arrays 1-D, same size."""
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i]
