"""CUDA twins of nnctl/engine/cpu/conv.py: im2col/col2im, the direct forward and weight gradient, the
tap-shift sum and spread, and the in-order sum of per-chunk partials — same arguments (`first`, `count`,
`geometry` = (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w)) and layouts as the CPU kernels.

Every kernel is a gather: one thread an output element, reading what it needs in a fixed order (col2im walks
the taps in (ki, kj) order), so no two threads write one cell and no atomics are needed.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda import columns
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, view


@cuda.jit(**KERNEL)
def _im2col(x, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, cols):
    k = cuda.grid(1)
    channels = x.shape[3]
    depth = kh * kw * channels
    if k < count * out_h * out_w * depth:
        row, entry = k // depth, k % depth
        c = entry % channels
        kj = (entry // channels) % kw
        ki = entry // (channels * kw)
        ox = row % out_w
        oy = (row // out_w) % out_h
        b = row // (out_w * out_h)
        iy, ix = oy * sh - pt + ki * dh, ox * sw - pl + kj * dw
        inside = 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]
        cols[row, entry] = x[first + b, iy, ix, c] if inside else 0.0


def im2col(x, first, count, geometry, cols):
    """cols[(b·out_h + oy)·out_w + ox, (ki·kw + kj)·C + c] = the input cell that tap reads (0 in the padding)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    depth = kh * kw * x.shape[3]
    _im2col[on(*grid1(count * out_h * out_w * depth))](x, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w,
                                                       cols)


@cuda.jit(**KERNEL)
def _col2im(cols, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, dx):
    k = cuda.grid(1)
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    if k < count * height * width * channels:
        c = k % channels
        ix = (k // channels) % width
        iy = (k // (channels * width)) % height
        b = k // (channels * width * height)
        total = 0.0
        for ki in range(kh):
            ty = iy + pt - ki * dh
            if ty < 0 or ty % sh != 0 or ty // sh >= out_h:
                continue
            oy = ty // sh
            for kj in range(kw):
                tx = ix + pl - kj * dw
                if tx < 0 or tx % sw != 0 or tx // sw >= out_w:
                    continue
                ox = tx // sw
                total += cols[(b * out_h + oy) * out_w + ox, (ki * kw + kj) * channels + c]
        dx[first + b, iy, ix, c] = total


def col2im(cols, first, count, geometry, dx):
    """dx[first:first + count] = the column gradients added back onto the cells they read (overwritten)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    size = count * dx.shape[1] * dx.shape[2] * dx.shape[3]
    _col2im[on(*grid1(size))](cols, first, count, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, dx)


@cuda.jit(device=True)
def conv_at(x, kernel, image, oy, ox, f, kh, kw, sh, sw, dh, dw, pt, pl):
    """Conv output (oy, ox, f) of one image: its taps added in (ki, kj, c) order in float32, as the CPU's
    conv_direct_forward adds them (the direct forward's and the pooled forwards' cells)."""
    channels = x.shape[3]
    total = np.float32(0.0)
    for ki in range(kh):
        iy = oy * sh - pt + ki * dh
        for kj in range(kw):
            ix = ox * sw - pl + kj * dw
            if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]:
                for c in range(channels):
                    total += x[image, iy, ix, c] * kernel[(ki * kw + kj) * channels + c, f]
    return total


@cuda.jit(**KERNEL)
def _direct_forward(x, kernel, first, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, z):
    f, row0, row_step = cells()
    if f < z.shape[1]:
        for row in range(row0, z.shape[0], row_step):
            ox, oy, b = row % out_w, (row // out_w) % out_h, row // (out_w * out_h)
            z[row, f] = conv_at(x, kernel, first + b, oy, ox, f, kh, kw, sh, sw, dh, dw, pt, pl)


def conv_direct_forward(x, kernel, first, count, geometry, z):
    """z = im2col(x) @ kernel without the columns. kernel: (kh·kw·C, F); z: (count·out_h·out_w, F)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    _direct_forward[on(*grid2(z.shape[0], z.shape[1]))](x, kernel, first, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w,
                                                        z)


@cuda.jit(**KERNEL)
def _direct_weight_grad(x, dz, first, kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w, dkernel):
    f, row0, row_step = cells()
    channels = x.shape[3]
    if f < dkernel.shape[1]:
        for entry in range(row0, dkernel.shape[0], row_step):
            c = entry % channels
            kj = (entry // channels) % kw
            ki = entry // (channels * kw)
            total = 0.0
            for row in range(dz.shape[0]):  # the output positions in order
                ox = row % out_w
                oy = (row // out_w) % out_h
                b = row // (out_w * out_h)
                iy, ix = oy * sh - pt + ki * dh, ox * sw - pl + kj * dw
                if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]:
                    total += x[first + b, iy, ix, c] * dz[row, f]
            dkernel[entry, f] = total


def conv_direct_weight_grad(x, dz, first, count, geometry, dkernel):
    """dkernel = im2col(x)ᵀ @ dz without the columns (overwritten)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    _direct_weight_grad[on(*grid2(*dkernel.shape))](x, dz, first, kh, kw, sh, sw, dh, dw, pt, pl, out_h,
                                                    out_w, dkernel)


@cuda.jit(**KERNEL)
def _taps_sum(y, height, width, kh, kw, dh, dw, pt, pl, out_h, out_w, z):
    f, row0, row_step = cells()
    filters = z.shape[1]
    if f < filters:
        for row in range(row0, z.shape[0], row_step):
            ox = row % out_w
            oy = (row // out_w) % out_h
            b = row // (out_w * out_h)
            total = 0.0
            for ki in range(kh):
                iy = oy - pt + ki * dh
                for kj in range(kw):
                    ix = ox - pl + kj * dw
                    if 0 <= iy < height and 0 <= ix < width:
                        total += y[(b * height + iy) * width + ix, (ki * kw + kj) * filters + f]
            z[row, f] = total


def conv_taps_sum(y, count, height, width, geometry, z):
    """z[(b, oy, ox), f] = Σ over the taps of the shifted per-tap products y[(b, iy, ix), tap·F + f] (stride 1)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    _taps_sum[on(*grid2(z.shape[0], z.shape[1]))](y, height, width, kh, kw, dh, dw, pt, pl, out_h, out_w, z)


@cuda.jit(**KERNEL)
def _taps_spread(dz, height, width, kh, kw, dh, dw, pt, pl, out_h, out_w, spread):
    entry, row0, row_step = cells()
    filters = dz.shape[1]
    if entry < spread.shape[1]:
        for row in range(row0, spread.shape[0], row_step):
            f = entry % filters
            tap = entry // filters
            ki, kj = tap // kw, tap % kw
            ix = row % width
            iy = (row // width) % height
            b = row // (width * height)
            oy, ox = iy + pt - ki * dh, ix + pl - kj * dw
            inside = 0 <= oy < out_h and 0 <= ox < out_w
            spread[row, entry] = dz[(b * out_h + oy) * out_w + ox, f] if inside else 0.0


def conv_taps_spread(dz, count, height, width, geometry, spread):
    """spread[(b, iy, ix), tap·F + f] = the output gradient that tap's shift sends there (0 where none)."""
    kh, kw, sh, sw, dh, dw, pt, pl, out_h, out_w = geometry
    _taps_spread[on(*grid2(spread.shape[0], spread.shape[1]))](dz, height, width, kh, kw, dh, dw, pt, pl, out_h, out_w,
                                                               spread)


@cuda.jit(**KERNEL)
def _sum_partials(partials, count, out):
    f, row0, row_step = cells()
    if f < out.shape[1]:
        for p in range(row0, out.shape[0], row_step):
            total = partials[0, p, f]
            for i in range(1, count):
                total += partials[i, p, f]
            out[p, f] = total


def sum_partials(partials, count, out):
    """out = partials[0] + … + partials[count − 1], added in that order; past columns.TALL of them (a recurrent
    layer's bias gradient over samples × steps) as columns.py adds a tall column, in chunks and lanes: one thread
    walking 64,000 partials would wait on memory at every one."""
    if not columns.tall(count):
        _sum_partials[on(*grid2(out.shape[0], out.shape[1]))](partials, count, out)
        return
    entries = out.shape[0] * out.shape[1]
    columns.column_sums(view(partials, ("rows", count, entries), lambda a: a[:count].reshape(count, entries)),
                      view(out, "flat", lambda a: a.reshape(entries)))


KERNELS = ("im2col", "col2im", "conv_direct_forward", "conv_direct_weight_grad", "conv_taps_sum", "conv_taps_spread",
           "sum_partials")
