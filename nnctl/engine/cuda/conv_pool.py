"""CUDA twins of the conv + max pooling fusions of nnctl/engine/cpu/conv.py: the direct conv pooled in one pass
(forward, kernel gradient) and the columns plan's pooled gradients — same arguments and layouts as the CPU kernels.

Every kernel is a gather: one thread an output element, adding its terms in the CPU kernel's order (images, then
pooled cells or positions in order) in the arrays' precision, so no two threads write one cell and no atomics are
needed. One running sum a thread: the CPU's vector blocks (simd.py) split theirs in partial sums, so the two agree
to rounding, not to the byte; ties and NaNs follow the CPU's rules. The CPU's one-image scratches (`z`, `dz`,
`one`) are taken for the argument order only: a thread keeps its partial sums in registers, and the direct kernel
gradient unpools the whole chunk at once into a device scratch (launch.scratch).
argmax holds flat indices (position·filters + filter) into an image's conv output, as max pooling writes them.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.conv import conv_at
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, scratch


@cuda.jit(device=True)
def wins(v, best):
    """Whether v takes the maximum's place: larger, or the first NaN (a NaN, once in, stays)."""
    return (v > best or v != v) and best == best


@cuda.jit(device=True)
def first_max4(v0, v1, v2, v3, at, step, row):
    """(maximum, flat index) of a 2×2 window v0 v1 / v2 v3 in row-major order, the first winning ties (the CPU's
    pooling.first_max4); v0 is at `at`, the next column + step, the next row + row."""
    best, where = v0, at
    if wins(v1, best):
        best, where = v1, at + step
    if wins(v2, best):
        best, where = v2, at + row
    if wins(v3, best):
        best, where = v3, at + row + step
    return best, where


@cuda.jit(**KERNEL)
def _direct_pool_forward(x, kernel, bias, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, ph, pw, psh,
                         psw, ppt, ppl, pooled, argmax):
    k = cuda.grid(1)
    pooled_h, pooled_w, filters = pooled.shape[1], pooled.shape[2], pooled.shape[3]
    if k < count * pooled_h * pooled_w * filters:
        f = k % filters
        j = (k // filters) % pooled_w
        i = (k // (filters * pooled_w)) % pooled_h
        b = first + k // (filters * pooled_w * pooled_h)
        h0, h1 = max(i * psh - ppt, 0), min(i * psh - ppt + ph, out_h)
        w0, w1 = max(j * psw - ppl, 0), min(j * psw - ppl + pw, out_w)
        best = conv_at(x, kernel, b, h0, w0, f, kh, kw, sh, sw, dh, dw, pt, pl) + bias[f]
        where = (h0 * out_w + w0) * filters + f
        for oy in range(h0, h1):  # the window's cells in row-major order, each convolved here
            for ox in range(w0, w1):
                if oy == h0 and ox == w0:
                    continue
                v = conv_at(x, kernel, b, oy, ox, f, kh, kw, sh, sw, dh, dw, pt, pl) + bias[f]
                if wins(v, best):
                    best, where = v, (oy * out_w + ox) * filters + f
        pooled[b, i, j, f] = best
        argmax[b, i, j, f] = where


def conv_direct_pool_forward(x, kernel, bias, first, count, geometry, window, z, pooled, argmax):
    """pooled, argmax of images [first, first + count) = max pooling (`window` = (ph, pw, sh, sw, pt, pl)) of
    conv_direct_forward + bias: one thread a pooled cell, convolving its window's cells itself (z unused)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    size = count * pooled.shape[1] * pooled.shape[2] * pooled.shape[3]
    _direct_pool_forward[on(*grid1(size))](x, kernel, bias, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w,
                                           *window, pooled, argmax)


@cuda.jit(**KERNEL)
def _unpool(dpooled, argmax, first, count, positions, filters, dz):
    k = cuda.grid(1)
    if k < count * positions * filters:
        b, cell = k // (positions * filters), k % (positions * filters)
        total = np.float32(0.0)
        for at in range(cell % filters, dpooled.shape[1], filters):  # the filter's pooled cells, in order
            if argmax[first + b, at] == cell:
                total += dpooled[first + b, at]
        dz[k] = total


@cuda.jit(**KERNEL)
def _direct_pool_weight_grad(x, dz, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, dkernel):
    f, row0, row_step = cells()
    channels, filters = x.shape[3], dkernel.shape[1]
    if f < filters:
        for entry in range(row0, dkernel.shape[0], row_step):
            c = entry % channels
            kj = (entry // channels) % kw
            ki = entry // (channels * kw)
            total = np.float32(0.0)
            for b in range(count):
                one = np.float32(0.0)  # this image's conv_direct_weight_grad, its positions in order
                for oy in range(out_h):
                    iy = oy * sh - pt + ki * dh
                    for ox in range(out_w):
                        ix = ox * sw - pl + kj * dw
                        if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]:
                            one += x[first + b, iy, ix, c] * dz[((b * out_h + oy) * out_w + ox) * filters + f]
                total = one if b == 0 else total + one
            dkernel[entry, f] = total


def conv_direct_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dz, one, dkernel):
    """dkernel = Σ over images [first, first + count), in order, of conv_direct_weight_grad(x[b], the image's
    max_pool_backward(dpooled[b])) (overwritten); every winner lies in its own filter's plane, as pooling makes
    them. The chunk's unpooled gradient goes to a device scratch (dz and one unused)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    filters = dkernel.shape[1]
    unpooled = scratch("conv_pool_dz", count * out_h * out_w * filters, dkernel.dtype)
    _unpool[on(*grid1(unpooled.shape[0]))](dpooled, argmax, first, count, out_h * out_w, filters, unpooled)
    _direct_pool_weight_grad[on(*grid2(*dkernel.shape))](x, unpooled, first, count, kh, kw, sh, sw, dh, dw, pt, pl,
                                                         out_h, out_w, dkernel)


@cuda.jit(**KERNEL)
def _pooled_weight_grad(cols, dpooled, argmax, first, count, positions, dkernel):
    f, row0, row_step = cells()
    filters = dkernel.shape[1]
    if f < filters:
        for p in range(row0, dkernel.shape[0], row_step):
            total = np.float32(0.0)
            for b in range(count):
                for at in range(f, dpooled.shape[1], filters):  # the filter's pooled cells, in order
                    g = dpooled[first + b, at]
                    if g != 0:
                        total += g * cols[b * positions + argmax[first + b, at] // filters, p]
            dkernel[p, f] = total


def conv_pooled_weight_grad(cols, dpooled, argmax, first, count, positions, dkernel):
    """dkernel[p, f] = Σ_{b, cell (in order), g = dpooled[b, cell·F + f] ≠ 0} g · cols[b·positions + winner, p]
    (overwritten); one thread a kernel entry. cols: (count·positions, depth); dkernel: (depth, filters)."""
    _pooled_weight_grad[on(*grid2(*dkernel.shape))](cols, dpooled, argmax, first, count, positions, dkernel)


@cuda.jit(**KERNEL)
def _pooled_columns_grad(dpooled, argmax, kernel_t, first, count, positions, dcols):
    p, row0, row_step = cells()
    filters = kernel_t.shape[0]
    if p < dcols.shape[1]:
        for row in range(row0, dcols.shape[0], row_step):
            b, pos = first + row // positions, row % positions
            total = np.float32(0.0)
            for k in range(dpooled.shape[1]):  # the image's cells winning here, in (cell, filter) order
                g = dpooled[b, k]
                if g != 0 and argmax[b, k] // filters == pos:
                    total += g * kernel_t[k % filters, p]
            dcols[row, p] = total


def conv_pooled_columns_grad(dpooled, argmax, kernel_t, first, count, positions, dcols):
    """dcols[b·positions + pos] = Σ_{k (in order) winning at pos, g = dpooled[b, k] ≠ 0} g · kernel_t[k mod F]
    (overwritten): one thread a column entry, scanning its image's cells (the CPU's counting sort keeps this
    order). kernel_t: (filters, depth); dcols: (count·positions, depth)."""
    _pooled_columns_grad[on(*grid2(*dcols.shape))](dpooled, argmax, kernel_t, first, count, positions, dcols)


KERNELS = ("conv_direct_pool_forward", "conv_direct_pool_weight_grad", "conv_pooled_weight_grad",
           "conv_pooled_columns_grad")
