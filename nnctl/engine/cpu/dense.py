"""Dense-layer kernels: fused bias + activation forward/backward, small GEMMs, row gather, dropout.

Large GEMMs go through NumPy's BLAS (see `nnctl.engine.backend`); the loops here serve small layers.
"""

import math

import numpy as np
from numba import njit

from nnctl.engine.cpu.simd import gather_row
from nnctl.engine.settings import KERNEL

LINEAR, RELU, SIGMOID, TANH, SOFTMAX, ELU, LEAKY_RELU, SOFTPLUS, GELU = range(9)
ACTIVATION_CODES = {
    "linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX,
    "elu": ELU, "leaky_relu": LEAKY_RELU, "softplus": SOFTPLUS, "gelu": GELU,
}
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@njit(inline="always", **KERNEL)
def _add_bias(z, bias):
    """z[i, j] += bias[j]."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += bias[j]


@njit(inline="always", **KERNEL)
def _column_sums(dz, db):
    """db[j] = Σ_i dz[i, j]."""
    for j in range(dz.shape[1]):
        db[j] = 0.0
    for i in range(dz.shape[0]):
        for j in range(dz.shape[1]):
            db[j] += dz[i, j]


@njit(inline="always", **KERNEL)
def _bias_map(act, z, bias, alpha, y):
    """z += bias; y = act(z, alpha) element by element. Inlined into each bias_*_forward below, so `act` is
    a constant there and no dispatcher ever appears in a cached kernel's signature."""
    _add_bias(z, bias)
    for i in range(z.shape[0]):  # harmless when y is z (linear)
        for j in range(z.shape[1]):
            y[i, j] = act(z[i, j], alpha)


@njit(inline="always", **KERNEL)
def _grad_map(grad, dy, z, y, alpha, dz, db):
    """dz = grad(dy, z, y, alpha) element by element (dz may be dy); db = column sums of dz."""
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            dz[i, j] = grad(dy[i, j], z[i, j], y[i, j], alpha)
    _column_sums(dz, db)


# One kernel pair per activation, so a model compiles only the activations it uses (a kernel branching on an
# activation code compiled all nine: 0.9 s forward, 0.6 s backward, linked again into every caller).
# bias_<act>_forward(z, bias, alpha, y): z, y: (n, units) (y may be z for linear); bias: (units,); alpha: the
#     ELU alpha / leaky-ReLU slope.           for i, j: z[i, j] += bias[j]; y[i, j] = act(z[i, j])
# bias_<act>_backward(dy, z, y, alpha, dz, db): dy, z, y, dz: (n, units), dz may be dy; db: (units,),
#     overwritten.                            for i, j: dz[i, j] = dy[i, j] · act'(z[i, j]); db[j] += dz[i, j]

@njit(**KERNEL)
def _linear(v, alpha):
    return v


@njit(**KERNEL)
def _linear_grad(dy, z, y, alpha):
    return dy


@njit(**KERNEL)
def bias_linear_forward(z, bias, alpha, y):
    _bias_map(_linear, z, bias, alpha, y)


@njit(**KERNEL)
def bias_linear_backward(dy, z, y, alpha, dz, db):
    _grad_map(_linear_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _relu(v, alpha):
    return v if v > 0 else 0.0


@njit(**KERNEL)
def _relu_grad(dy, z, y, alpha):
    return dy if z > 0 else 0.0


@njit(**KERNEL)
def bias_relu_forward(z, bias, alpha, y):
    _bias_map(_relu, z, bias, alpha, y)


@njit(**KERNEL)
def bias_relu_backward(dy, z, y, alpha, dz, db):
    _grad_map(_relu_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _sigmoid(v, alpha):
    # Two branches so exp never overflows: exp(-v) for v ≥ 0, exp(v) otherwise.
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(**KERNEL)
def _sigmoid_grad(dy, z, y, alpha):
    return dy * y * (1.0 - y)


@njit(**KERNEL)
def bias_sigmoid_forward(z, bias, alpha, y):
    _bias_map(_sigmoid, z, bias, alpha, y)


@njit(**KERNEL)
def bias_sigmoid_backward(dy, z, y, alpha, dz, db):
    _grad_map(_sigmoid_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _tanh(v, alpha):
    return math.tanh(v)


@njit(**KERNEL)
def _tanh_grad(dy, z, y, alpha):
    return dy * (1.0 - y * y)


@njit(**KERNEL)
def bias_tanh_forward(z, bias, alpha, y):
    _bias_map(_tanh, z, bias, alpha, y)


@njit(**KERNEL)
def bias_tanh_backward(dy, z, y, alpha, dz, db):
    _grad_map(_tanh_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def bias_softmax_forward(z, bias, alpha, y):
    """Softmax over each row, shifted by the row's maximum so exp never overflows."""
    _add_bias(z, bias)
    n, units = z.shape
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


@njit(**KERNEL)
def bias_softmax_backward(dy, z, y, alpha, dz, db):
    """dz[i, j] = y[i, j] · (dy[i, j] − Σ_k dy[i, k] · y[i, k])."""
    for i in range(dy.shape[0]):
        inner = 0.0
        for j in range(dy.shape[1]):
            inner += dy[i, j] * y[i, j]
        for j in range(dy.shape[1]):
            dz[i, j] = y[i, j] * (dy[i, j] - inner)
    _column_sums(dz, db)


@njit(**KERNEL)
def _elu(v, alpha):
    return v if v > 0 else alpha * math.expm1(v)


@njit(**KERNEL)
def _elu_grad(dy, z, y, alpha):
    return dy if z > 0 else dy * (y + alpha)


@njit(**KERNEL)
def bias_elu_forward(z, bias, alpha, y):
    _bias_map(_elu, z, bias, alpha, y)


@njit(**KERNEL)
def bias_elu_backward(dy, z, y, alpha, dz, db):
    _grad_map(_elu_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _leaky_relu(v, alpha):
    return v if v > 0 else alpha * v


@njit(**KERNEL)
def _leaky_relu_grad(dy, z, y, alpha):
    return dy if z > 0 else dy * alpha


@njit(**KERNEL)
def bias_leaky_relu_forward(z, bias, alpha, y):
    _bias_map(_leaky_relu, z, bias, alpha, y)


@njit(**KERNEL)
def bias_leaky_relu_backward(dy, z, y, alpha, dz, db):
    _grad_map(_leaky_relu_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _softplus(v, alpha):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@njit(**KERNEL)
def _softplus_grad(dy, z, y, alpha):
    return dy * _sigmoid(z, alpha)


@njit(**KERNEL)
def bias_softplus_forward(z, bias, alpha, y):
    _bias_map(_softplus, z, bias, alpha, y)


@njit(**KERNEL)
def bias_softplus_backward(dy, z, y, alpha, dz, db):
    _grad_map(_softplus_grad, dy, z, y, alpha, dz, db)


@njit(**KERNEL)
def _gelu(v, alpha):
    return 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@njit(**KERNEL)
def _gelu_grad(dy, z, y, alpha):
    cdf = 0.5 * (1.0 + math.erf(z * _INV_SQRT2))
    return dy * (cdf + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z))


@njit(**KERNEL)
def bias_gelu_forward(z, bias, alpha, y):
    _bias_map(_gelu, z, bias, alpha, y)


@njit(**KERNEL)
def bias_gelu_backward(dy, z, y, alpha, dz, db):
    _grad_map(_gelu_grad, dy, z, y, alpha, dz, db)


# Indexed by ACTIVATION_CODES.
BIAS_ACT_FORWARD = (bias_linear_forward, bias_relu_forward, bias_sigmoid_forward, bias_tanh_forward,
                    bias_softmax_forward, bias_elu_forward, bias_leaky_relu_forward, bias_softplus_forward,
                    bias_gelu_forward)
BIAS_ACT_BACKWARD = (bias_linear_backward, bias_relu_backward, bias_sigmoid_backward, bias_tanh_backward,
                     bias_softmax_backward, bias_elu_backward, bias_leaky_relu_backward, bias_softplus_backward,
                     bias_gelu_backward)


def bias_act_forward(z, bias, act, alpha, y):
    """z += bias; y = act(z) for an activation code: calls that activation's kernel."""
    BIAS_ACT_FORWARD[act](z, bias, alpha, y)


def bias_act_backward(dy, z, y, act, alpha, dz, db):
    """dz = dy · act'(z); db = column sums of dz, for an activation code: calls that activation's kernel."""
    BIAS_ACT_BACKWARD[act](dy, z, y, alpha, dz, db)


# Below this many output columns a vector block would be mostly masked off, so the small-n variants loop over
# the other axis instead (the Boston MLP's 1-unit output layer).
_NARROW = 8


@njit(**KERNEL)
def matmul(a, b, out):
    """out = a @ b for small operands. a: (m, k), b: (k, n), out: (m, n); b and out C-contiguous.

        for i: out[i, :] = Σ_p a[i, p] * b[p, :]     (n ≥ 8: in vector blocks, simd.gather_row, the last
                                                        n % 16 columns masked; narrow n: a dot per output)
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
    for i in range(m):
        gather_row(b, None, a[i], 0, k, out, i)


@njit(**KERNEL)
def matmul_tn(a, b, out):
    """out = aᵀ @ b (the weight gradient xᵀ·dz). a: (m, k), b: (m, n), out: (k, n); b and out C-contiguous.

        for p: out[p, :] = Σ_i a[i, p] * b[i, :]    (n ≥ 8: in vector blocks, simd.gather_row;
                                                      narrow n: for j, i: out[:, j] += b[i, j]·a[i, :])
    """
    m, k = a.shape
    n = b.shape[1]
    if n >= _NARROW:
        for p in range(k):
            gather_row(b, None, a[:, p], 0, m, out, p)
        return
    out[:, :] = 0.0
    for j in range(n):
        for i in range(m):
            bij = b[i, j]
            for p in range(k):
                out[p, j] += a[i, p] * bij


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
