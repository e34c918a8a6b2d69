"""CUDA twins of nnctl/engine/cpu/dense.py: bias + activation forward and backward, the small GEMMs, row
gathers, element-wise products and dropout — same names, same arguments, device arrays (or, under
NUMBA_ENABLE_CUDASIM=1, NumPy arrays the simulator runs on).

Reductions keep one fixed order, so the bytes do not depend on the launch geometry: a column sum is one thread
walking its rows, and a tall one (a convolution's bias over every pixel of the batch) columns.py's blocks of
chunks and lanes, in a fixed tree — one thread walking 43,000 rows would wait on memory at every row. The
activation is a code read inside one kernel (a GPU kernel compiles once per signature; branching on a code costs
nothing next to a launch).
"""

from __future__ import annotations

import math

from numba import cuda

from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.cuda import columns
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, wide

LINEAR, RELU, SIGMOID, TANH, SOFTMAX, ELU, LEAKY_RELU, SOFTPLUS, GELU = (
    ACTIVATION_CODES[name] for name in ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "leaky_relu",
                                        "softplus", "gelu"))


@cuda.jit(device=True)
def sigmoid(v):
    """1 / (1 + e^−v) without overflow for either sign (shared with the recurrent kernels)."""
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


@cuda.jit(device=True)
def _act(code, v, alpha):
    if code == RELU:
        return v if v > 0 else 0.0
    if code == SIGMOID:
        return sigmoid(v)
    if code == TANH:
        return math.tanh(v)
    if code == ELU:
        return v if v > 0 else alpha * math.expm1(v)
    if code == LEAKY_RELU:
        return v if v > 0 else alpha * v
    if code == SOFTPLUS:
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    if code == GELU:
        return 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
    return v


@cuda.jit(device=True)
def _grad(code, dy, z, y, alpha):
    if code == RELU:
        return dy if z > 0 else 0.0
    if code == SIGMOID:
        return dy * y * (1.0 - y)
    if code == TANH:
        return dy * (1.0 - y * y)
    if code == ELU:
        return dy if z > 0 else dy * (y + alpha)
    if code == LEAKY_RELU:
        return dy if z > 0 else dy * alpha
    if code == SOFTPLUS:
        return dy / (1.0 + math.exp(-z))
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(z * 0.7071067811865476))
        return dy * (cdf + z * 0.3989422804014327 * math.exp(-0.5 * z * z))
    return dy


# The cells below are each kernel's work for one element (row, column); the kernels run one a thread, and
# fused.py's whole-step kernel runs the same cells, so both give the same bytes.
@cuda.jit(device=True)
def bias_act_cell(z, bias, code, alpha, y, i, j):
    v = z[i, j] + bias[j]
    z[i, j] = v
    y[i, j] = _act(code, v, alpha)


@cuda.jit(device=True)
def bias_softmax_row(z, bias, y, i):
    """Shifted by the row's maximum, as the CPU kernel."""
    units = z.shape[1]
    for j in range(units):
        z[i, j] += bias[j]
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


@cuda.jit(device=True)
def softmax_backward_row(dy, y, dz, i):
    inner = 0.0
    for j in range(dy.shape[1]):
        inner += dy[i, j] * y[i, j]
    for j in range(dy.shape[1]):
        dz[i, j] = y[i, j] * (dy[i, j] - inner)


@cuda.jit(device=True)
def column_sum(dz, rows, j):
    """Σ_i dz[i, j] over the first `rows` rows, in order (fixed order: same bytes)."""
    total = 0.0
    for i in range(rows):
        total += dz[i, j]
    return total


@cuda.jit(device=True)
def product(a, b, ta, tb, depth, i, j):
    """(op(a) @ op(b))[i, j] over `depth` terms, op a transpose when ta/tb, k in order."""
    total = 0.0
    for k in range(depth):
        left = a[k, i] if ta else a[i, k]
        right = b[j, k] if tb else b[k, j]
        total += left * right
    return total


@cuda.jit(**KERNEL)
def _bias_act_forward(z, bias, code, alpha, y):
    j, row0, row_step = cells()
    if j < z.shape[1]:
        for i in range(row0, z.shape[0], row_step):
            bias_act_cell(z, bias, code, alpha, y, i, j)


@cuda.jit(**KERNEL)
def _bias_softmax_forward(z, bias, y):
    """One thread per row."""
    i = cuda.grid(1)
    if i < z.shape[0]:
        bias_softmax_row(z, bias, y, i)


@cuda.jit(**KERNEL)
def _softmax_backward(dy, y, dz):
    i = cuda.grid(1)
    if i < dy.shape[0]:
        softmax_backward_row(dy, y, dz, i)


@cuda.jit(**KERNEL)
def _column_sums(dz, db):
    """db[j] = Σ_i dz[i, j], one thread per column walking the rows in order."""
    j = cuda.grid(1)
    if j < dz.shape[1]:
        db[j] = column_sum(dz, dz.shape[0], j)


def bias_act_forward(z, bias, act, alpha, y):
    """z += bias; y = act(z) for an activation code. z, y: (n, units) (y may be z for linear); bias: (units,)."""
    if act == SOFTMAX:
        blocks, threads = grid1(z.shape[0])
        _bias_softmax_forward[on(blocks, threads)](z, bias, y)
        return
    blocks, threads = grid2(*z.shape)
    _bias_act_forward[on(blocks, threads)](z, bias, act, alpha, y)


def column_sums(dz, db):
    """db[j] = Σ_i dz[i, j] in a fixed order: one thread a column walking its rows, or past columns.TALL rows
    columns.py's chunks and lanes (two launches)."""
    if columns.tall(dz.shape[0]):
        columns.column_sums(dz, db)
        return
    _column_sums[on(*grid1(dz.shape[1]))](dz, db)


@cuda.jit(**KERNEL)
def _act_backward_sums(dy, z, y, code, alpha, dz, db):
    """dz = dy · act'(z) and its column sums in one launch for short columns: one thread a column, its rows in
    order."""
    j = cuda.grid(1)
    if j < dy.shape[1]:
        for i in range(dy.shape[0]):
            dz[i, j] = _grad(code, dy[i, j], z[i, j], y[i, j], alpha)
        db[j] = column_sum(dz, dy.shape[0], j)


@wide(columns.BLOCK_THREADS)
def _act_backward_chunks(dy, z, y, code, alpha, dz, parts):
    """dz = dy · act'(z) and a tall column sum's first launch in one (columns.py)."""
    column, first, stop = columns.rows_of(dy)
    total = 0.0
    if column < dy.shape[1]:
        for i in range(first, stop, columns.LANES):
            g = _grad(code, dy[i, column], z[i, column], y[i, column], alpha)
            dz[i, column] = g
            total += g
    columns.place_chunk(total, 0.0, parts)


def bias_act_backward(dy, z, y, act, alpha, dz, db):
    """dz = dy · act'(z) (dz may be dy); db = column sums of dz. A linear activation with dz the very array dy
    (as the device ops pass it) is the column sums alone; short columns (a Dense layer's batch) take one launch."""
    if act == LINEAR and dz is dy:
        column_sums(dz, db)
    elif act == SOFTMAX:
        blocks, threads = grid1(dy.shape[0])
        _softmax_backward[on(blocks, threads)](dy, y, dz)
        column_sums(dz, db)
    elif not columns.tall(dy.shape[0]):
        _act_backward_sums[on(*grid1(dy.shape[1]))](dy, z, y, act, alpha, dz, db)
    else:  # dz and the chunks' sums in one launch, then the chunks' sums added
        blocks, threads, chunks = columns.geometry(*dy.shape)
        parts = columns.partials(chunks, dy.shape[1])
        _act_backward_chunks[on(blocks, threads)](dy, z, y, act, alpha, dz, parts)
        columns.finish_sums(parts, db)


@cuda.jit(**KERNEL)
def _matmul(a, b, out, ta, tb):
    """out = op(a) @ op(b), op a transpose when ta/tb: one thread per output element, k in order."""
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for i in range(row0, out.shape[0], row_step):
            out[i, j] = product(a, b, ta, tb, a.shape[0] if ta else a.shape[1], i, j)


def matmul(a, b, out):
    """out = a @ b for shapes too small to pay for a cuBLAS call. a: (m, k), b: (k, n)."""
    blocks, threads = grid2(*out.shape)
    _matmul[on(blocks, threads)](a, b, out, False, False)


def matmul_tn(a, b, out):
    """out = aᵀ @ b. a: (m, k), b: (m, n)."""
    blocks, threads = grid2(*out.shape)
    _matmul[on(blocks, threads)](a, b, out, True, False)


def matmul_nt(a, b, out):
    """out = a @ bᵀ. a: (m, n), b: (k, n)."""
    blocks, threads = grid2(*out.shape)
    _matmul[on(blocks, threads)](a, b, out, False, True)


@cuda.jit(**KERNEL)
def _take_rows(x, rows, out):
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for i in range(row0, out.shape[0], row_step):
            out[i, j] = x[rows[i], j]


def take_rows(x, rows, out):
    """out[i, :] = x[rows[i], :]."""
    blocks, threads = grid2(*out.shape)
    _take_rows[on(blocks, threads)](x, rows, out)


@cuda.jit(**KERNEL)
def _take_rows_of_two(x, other, rows, out, other_out):
    j, row0, row_step = cells()
    for i in range(row0, out.shape[0], row_step):
        if j < out.shape[1]:
            out[i, j] = x[rows[i], j]
        if j < other_out.shape[1]:
            other_out[i, j] = other[rows[i], j]


def take_rows_of_two(x, other, rows, out, other_out):
    """take_rows(x, rows, out) and take_rows(other, rows, other_out) in one launch (an output's targets and its
    sample weights; the GPU's own)."""
    _take_rows_of_two[on(*grid2(out.shape[0], max(out.shape[1], other_out.shape[1])))](x, other, rows, out, other_out)


@cuda.jit(**KERNEL)
def _multiply(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


def multiply(a, b, out):
    """out = a · b element-wise (dropout's backward: dx = dy · mask). All arrays 1-D, same size."""
    blocks, threads = grid1(out.shape[0])
    _multiply[on(blocks, threads)](a, b, out)


@cuda.jit(**KERNEL)
def _dropout(x, uniform, rate, scale, y, mask):
    i = cuda.grid(1)
    if i < x.shape[0]:
        keep = uniform[i] >= rate
        mask[i] = scale if keep else 0.0
        y[i] = x[i] * mask[i]


def dropout_forward(x, uniform, rate, y, mask):
    """Inverted dropout with the run generator's uniforms: mask = (u ≥ rate) / (1 − rate); y = x · mask.
    All arrays 1-D, same size."""
    blocks, threads = grid1(x.shape[0])
    _dropout[on(blocks, threads)](x, uniform, rate, 1.0 / (1.0 - rate), y, mask)


KERNELS = ("bias_act_forward", "bias_act_backward", "matmul", "matmul_tn", "matmul_nt", "take_rows",
           "take_rows_of_two", "multiply", "dropout_forward")
