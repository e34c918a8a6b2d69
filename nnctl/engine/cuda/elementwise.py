"""The GPU's own kernels behind nnctl/engine/cuda/ndarray.py (the NumPy-like device arrays that run `nnctl.ops`,
and so users' custom layers, on the GPU): element-wise maps of one, two or three strided, broadcast operands,
row reductions in a fixed order, and row gathers and scatter-adds without atomics.

An operand is a 1-D device array `base`, the element `at` where it starts, and its strides in elements over the
output's shape, both padded in front to MAX_DIMS axes (a broadcast axis has stride 0). Values are computed in
float64 and stored in the output's dtype: exact for float32's +, −, ×, ÷ and sqrt (a float64 result rounded to
float32 is the float32 result), and one kernel a dtype combination serves every op by its code.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from nnctl.engine.cuda.launch import KERNEL

MAX_DIMS = 8
# Codes of the one-operand maps (COPY also casts) and of the two-operand ones.
COPY, NEGATIVE, EXP, LOG, SQRT, SQUARE, ABS, SIGN, TANH, LOG1P, EXPM1, NOT = range(12)
(ADD, SUBTRACT, MULTIPLY, DIVIDE, POWER, MAXIMUM, MINIMUM, GREATER, GREATER_EQUAL, LESS, LESS_EQUAL, EQUAL,
 NOT_EQUAL, AND, OR, LOGADDEXP) = range(16)
SUM, MAX, MIN, PROD = range(4)  # row reductions
ARGMAX, ARGMIN = range(2)
CHUNK = 1024  # a reduction's row is summed in chunks of this many, then the chunks' partials, in order


@cuda.jit(device=True)
def _at(i, shape, strides):
    """The element offset of output element `i` (row-major over `shape`) in an operand with `strides`."""
    offset = 0
    for d in range(MAX_DIMS - 1, -1, -1):
        size = shape[d]
        offset += (i % size) * strides[d]
        i //= size
    return offset


@cuda.jit(device=True)
def _one(code, v):
    if code == NEGATIVE:
        return -v
    if code == EXP:
        return math.exp(v)
    if code == LOG:
        return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)
    if code == SQRT:
        return math.sqrt(v) if v >= 0 else math.nan
    if code == SQUARE:
        return v * v
    if code == ABS:
        return abs(v)
    if code == SIGN:
        return 1.0 if v > 0 else (-1.0 if v < 0 else v)
    if code == TANH:
        return math.tanh(v)
    if code == LOG1P:
        return math.log1p(v) if v >= -1 else math.nan
    if code == EXPM1:
        return math.expm1(v)
    if code == NOT:
        return 1.0 if v == 0 else 0.0
    return v


@cuda.jit(device=True)
def _two(code, a, b):
    if code == ADD:
        return a + b
    if code == SUBTRACT:
        return a - b
    if code == MULTIPLY:
        return a * b
    if code == DIVIDE:
        if b == 0:
            return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    if code == POWER:
        return math.pow(a, b)
    if code == MAXIMUM:
        return a if a >= b or a != a else b
    if code == MINIMUM:
        return a if a <= b or a != a else b
    if code == GREATER:
        return 1.0 if a > b else 0.0
    if code == GREATER_EQUAL:
        return 1.0 if a >= b else 0.0
    if code == LESS:
        return 1.0 if a < b else 0.0
    if code == LESS_EQUAL:
        return 1.0 if a <= b else 0.0
    if code == EQUAL:
        return 1.0 if a == b else 0.0
    if code == NOT_EQUAL:
        return 1.0 if a != b else 0.0
    if code == AND:
        return 1.0 if a != 0 and b != 0 else 0.0
    if code == OR:
        return 1.0 if a != 0 or b != 0 else 0.0
    high, low = max(a, b), min(a, b)  # LOGADDEXP
    return high + math.log1p(math.exp(low - high)) if low != -math.inf else high


@cuda.jit(**KERNEL)
def unary(code, x, x_at, x_strides, out, out_at, out_strides, shape, n):
    """out[i] = f_code(x[i]) over `shape`'s n elements (COPY: a strided copy or cast)."""
    i = cuda.grid(1)
    if i < n:
        out[out_at + _at(i, shape, out_strides)] = _one(code, float64(x[x_at + _at(i, shape, x_strides)]))


@cuda.jit(**KERNEL)
def binary(code, a, a_at, a_strides, b, b_at, b_strides, out, out_at, out_strides, shape, n):
    """out[i] = f_code(a[i], b[i]) over the broadcast `shape`'s n elements."""
    i = cuda.grid(1)
    if i < n:
        va = float64(a[a_at + _at(i, shape, a_strides)])
        vb = float64(b[b_at + _at(i, shape, b_strides)])
        out[out_at + _at(i, shape, out_strides)] = _two(code, va, vb)


@cuda.jit(**KERNEL)
def select(c, c_at, c_strides, a, a_at, a_strides, b, b_at, b_strides, out, out_at, out_strides, shape, n):
    """out[i] = a[i] where c[i] else b[i] (NumPy's `where`)."""
    i = cuda.grid(1)
    if i < n:
        if c[c_at + _at(i, shape, c_strides)]:
            out[out_at + _at(i, shape, out_strides)] = float64(a[a_at + _at(i, shape, a_strides)])
        else:
            out[out_at + _at(i, shape, out_strides)] = float64(b[b_at + _at(i, shape, b_strides)])


@cuda.jit(**KERNEL)
def fill(out, value):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = value


@cuda.jit(**KERNEL)
def reduce_rows(code, x, x_at, rows, cols, span, out):
    """out[r, c] = the code's reduction of x[r, c·span : (c+1)·span] (x: (rows, cols) contiguous from x_at,
    out: (rows, ceil(cols / span)) contiguous), in column order; a thread a (row, chunk)."""
    k = cuda.grid(1)
    chunks = (cols + span - 1) // span
    if k < rows * chunks:
        r, c = k // chunks, k % chunks
        start = x_at + r * cols + c * span
        acc = float64(x[start])
        for j in range(1, min(span, cols - c * span)):
            v = float64(x[start + j])
            if code == SUM:
                acc += v
            elif code == PROD:
                acc *= v
            elif code == MAX:
                acc = acc if acc >= v or acc != acc else v
            else:
                acc = acc if acc <= v or acc != acc else v
        out[k] = acc


@cuda.jit(**KERNEL)
def arg_rows(code, x, x_at, rows, cols, out):
    """out[r] = the column of x[r]'s first maximum (ARGMAX) or minimum (ARGMIN); a thread a row."""
    r = cuda.grid(1)
    if r < rows:
        start, best = x_at + r * cols, 0
        for j in range(1, cols):
            v, w = x[start + j], x[start + best]
            if w == w and (v != v or (v > w if code == ARGMAX else v < w)):
                best = j
        out[r] = best


@cuda.jit(**KERNEL)
def gather_rows(x, x_at, width, rows, out):
    """out[i, :] = x[rows[i], :] (x: (·, width) contiguous from x_at; out: (len(rows), width))."""
    k = cuda.grid(1)
    if k < rows.shape[0] * width:
        i, j = k // width, k % width
        out[k] = x[x_at + rows[i] * width + j]


@cuda.jit(**KERNEL)
def scatter_add_rows(rows, g, width, out):
    """out[rows[i], :] += g[i, :] for i in order (repeated rows add up); a thread a column, so no atomics."""
    j = cuda.grid(1)
    if j < width:
        for i in range(rows.shape[0]):
            out[rows[i] * width + j] += g[i * width + j]


KERNELS = ()  # (the GPU's own: no CPU twin; listed in MODULES to be tested)
