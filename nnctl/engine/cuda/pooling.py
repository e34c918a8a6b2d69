"""CUDA twins of nnctl/engine/cpu/pooling.py: max and average pooling on (n, h, w, c) tensors, forward and
backward, same arguments as the CPU kernels (a 1-D input runs as (n, 1, t, c), as there).

Forward: one thread an output element, its window walked in row-major order (the first maximum wins; a NaN
wins and stays). Backward: one thread an input element gathering from the outputs whose windows hold it, in
output order — a gather instead of the CPU's scatter, so no two threads write one cell and the sum's order is
fixed (max pooling: where windows never overlap, one thread an output storing at its winner).
"""

from __future__ import annotations

import numba
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, grid1, on


@cuda.jit(device=True)
def _low(o, stride, pad):
    return max(o * stride - pad, 0)


@cuda.jit(device=True)
def _high(o, stride, pad, pool, size):
    return min(o * stride - pad + pool, size)


@cuda.jit(device=True)
def _position(k, shape):
    """(b, row, column, channel) of flat index k into a C-ordered (n, h, w, c) tensor."""
    c, w, h = shape[3], shape[2], shape[1]
    return k // (c * w * h), (k // (c * w)) % h, (k // c) % w, k % c


@cuda.jit(**KERNEL)
def _max_forward(x, ph, pw, sh, sw, pt, pl, y, argmax):
    k = cuda.grid(1)
    if k < y.size:
        b, i, j, ch = _position(k, y.shape)
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        h0, h1 = _low(i, sh, pt), _high(i, sh, pt, ph, h)
        w0, w1 = _low(j, sw, pl), _high(j, sw, pl, pw, w)
        best = x[b, h0, w0, ch]
        where = (h0 * w + w0) * c + ch
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                v = x[b, ih, iw, ch]
                if best != best:
                    break
                if v > best or v != v:
                    best = v
                    where = (ih * w + iw) * c + ch
        y[b, i, j, ch] = best
        argmax[b, i, j, ch] = where


def max_pool2d_forward(x, ph, pw, sh, sw, pt, pl, y, argmax):
    """y = the window maxima; argmax = the flat index into x[b] of each one's first cell."""
    _max_forward[on(*grid1(y.size))](x, ph, pw, sh, sw, pt, pl, y, argmax)


@cuda.jit(**KERNEL)
def _max_backward(dy, argmax, dx):
    """One thread per sample: the CPU's order of additions (overlapping windows add up in output order)."""
    b = cuda.grid(1)
    if b < dy.shape[0]:
        for k in range(dx.shape[1]):
            dx[b, k] = 0.0
        for k in range(dy.shape[1]):
            dx[b, argmax[b, k]] += dy[b, k]


def max_pool_backward(dy, argmax, dx):
    """dx[b, argmax[b, k]] += dy[b, k]; dy, argmax: (n, m); dx: (n, size), overwritten."""
    _max_backward[on(*grid1(dy.shape[0]))](dy, argmax, dx)


@cuda.jit(**KERNEL)
def _zero(dx):
    k = cuda.grid(1)
    if k < dx.size:
        dx[k // dx.shape[1], k % dx.shape[1]] = 0.0


@cuda.jit(**KERNEL)
def _max_backward_disjoint(dy, argmax, dx):
    k = cuda.grid(1)
    if k < dy.size:
        b, o = k // dy.shape[1], k % dy.shape[1]
        dx[b, argmax[b, o]] = numba.float32(0.0) + dy[b, o]  # 0 + dy, as the CPU's sum: −0 becomes 0


def max_pool_backward_disjoint(dy, argmax, dx):
    """max_pool_backward for windows that do not overlap (strides ≥ pool sizes, or one window an axis), where
    no input cell is the winner of two outputs: one thread an output storing its gradient at its winner, after
    one an input cell zeroing — the same bytes, with every element in parallel instead of a thread a sample."""
    _zero[on(*grid1(dx.size))](dx)
    _max_backward_disjoint[on(*grid1(dy.size))](dy, argmax, dx)


@cuda.jit(device=True)
def _first_window(cell, stride, pad, pool):
    """The first output (along an axis) whose window holds input cell `cell`."""
    low = cell + pad - pool + 1
    return 0 if low <= 0 else (low + stride - 1) // stride


@cuda.jit(**KERNEL)
def _max_backward_gather(dy, argmax, ph, pw, sh, sw, pt, pl, dx):
    k = cuda.grid(1)
    if k < dx.size:
        b, ih, iw, ch = _position(k, dx.shape)
        w, c = dx.shape[2], dx.shape[3]
        cell = (ih * w + iw) * c + ch
        last_i, last_j = min(dy.shape[1] - 1, (ih + pt) // sh), min(dy.shape[2] - 1, (iw + pl) // sw)
        total = numba.float32(0.0)
        for i in range(_first_window(ih, sh, pt, ph), last_i + 1):  # the windows holding the cell, in output order
            for j in range(_first_window(iw, sw, pl, pw), last_j + 1):
                if argmax[b, i, j, ch] == cell:
                    total += dy[b, i, j, ch]
        dx[b, ih, iw, ch] = total


def max_pool2d_backward_gather(dy, argmax, ph, pw, sh, sw, pt, pl, dx):
    """max_pool_backward where windows overlap (dy, argmax: (n, out_h, out_w, c); dx: (n, h, w, c), overwritten):
    one thread an input cell adding, in output order, the gradients of the windows it won — the CPU scatter's
    additions in its order, so the same bytes, with every cell in parallel instead of a thread a sample."""
    _max_backward_gather[on(*grid1(dx.size))](dy, argmax, ph, pw, sh, sw, pt, pl, dx)


@cuda.jit(**KERNEL)
def _average_forward(x, ph, pw, sh, sw, pt, pl, y):
    k = cuda.grid(1)
    if k < y.size:
        b, i, j, ch = _position(k, y.shape)
        h0, h1 = _low(i, sh, pt), _high(i, sh, pt, ph, x.shape[1])
        w0, w1 = _low(j, sw, pl), _high(j, sw, pl, pw, x.shape[2])
        total = 0.0
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                total += x[b, ih, iw, ch]
        y[b, i, j, ch] = total / ((h1 - h0) * (w1 - w0))


def average_pool2d_forward(x, ph, pw, sh, sw, pt, pl, y):
    """y = the mean of each window's real cells (padded cells are not counted, as TF's 'same')."""
    _average_forward[on(*grid1(y.size))](x, ph, pw, sh, sw, pt, pl, y)


@cuda.jit(**KERNEL)
def _average_backward(dy, ph, pw, sh, sw, pt, pl, dx):
    k = cuda.grid(1)
    h, w = dx.shape[1], dx.shape[2]
    if k < dx.size:
        b, ih, iw, ch = _position(k, dx.shape)
        total = 0.0
        for i in range(dy.shape[1]):  # the outputs whose window holds (ih, iw), in output order
            h0, h1 = _low(i, sh, pt), _high(i, sh, pt, ph, h)
            if h0 <= ih < h1:
                for j in range(dy.shape[2]):
                    w0, w1 = _low(j, sw, pl), _high(j, sw, pl, pw, w)
                    if w0 <= iw < w1:
                        total += dy[b, i, j, ch] / ((h1 - h0) * (w1 - w0))
        dx[b, ih, iw, ch] = total


def average_pool2d_backward(dy, ph, pw, sh, sw, pt, pl, dx):
    """dx = each output gradient spread evenly over its window's real cells (overwritten)."""
    _average_backward[on(*grid1(dx.size))](dy, ph, pw, sh, sw, pt, pl, dx)


# With the GPU's own max_pool_backward_disjoint and max_pool2d_backward_gather (no CPU twin: the CPU's one scatter
# serves every case).
KERNELS = ("max_pool2d_forward", "max_pool_backward", "average_pool2d_forward", "average_pool2d_backward",
           "max_pool_backward_disjoint", "max_pool2d_backward_gather")
