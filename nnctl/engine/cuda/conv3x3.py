"""CUDA twins of nnctl/engine/cpu/conv3x3.py: a 3×3 stride-1 conv under 2×2 max pooling (stride 2), its Winograd
F(2×2, 3×3) stages and its one-channel direct kernels — same arguments and layouts as the CPU kernels (the tiles'
16 GEMMs and the kernel's transform are BLAS calls of the plan, nnctl/engine/convolution.py, not kernels).

The transforms run one thread a tile and channel (winograd_input) or a tile and filter (the output stages),
with the CPU source's additions in its order (winograd_input and winograd_output_grad give the CPU's bytes; the
CPU's fastmath build may reassociate the others' sums, a few ulp apart); winograd_input_grad runs one thread an
input cell, gathering the ≤ 4 tiles that cover it in tile order (the CPU's scatter order), so no two threads write
one cell. Tile cell e = 4·i + j; tiles of an image are ordered (row, column); argmax holds flat indices
(row·out_w + column)·filters + filter into an image's conv output.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.conv import conv_at
from nnctl.engine.cuda.conv_pool import first_max4
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on


@cuda.jit(device=True)
def _bt(d0, d1, d2, d3):
    """Bᵀ·(d0, d1, d2, d3): Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@cuda.jit(device=True)
def _column(x, image, iy, ix, c):
    """Bᵀ applied to one column of a 4×4 input tile starting at row iy (cells outside the image are 0)."""
    inside = 0 <= ix < x.shape[2]
    zero = np.float32(0.0)
    d0 = x[image, iy, ix, c] if inside and 0 <= iy < x.shape[1] else zero
    d1 = x[image, iy + 1, ix, c] if inside and 0 <= iy + 1 < x.shape[1] else zero
    d2 = x[image, iy + 2, ix, c] if inside and 0 <= iy + 2 < x.shape[1] else zero
    d3 = x[image, iy + 3, ix, c] if inside and 0 <= iy + 3 < x.shape[1] else zero
    return _bt(d0, d1, d2, d3)


@cuda.jit(**KERNEL)
def _winograd_input(x, first, tiles_h, tiles_w, pt, pl, v):
    c, row0, row_step = cells()
    if c < v.shape[2]:
        for t in range(row0, v.shape[1], row_step):
            tx = t % tiles_w
            ty = (t // tiles_w) % tiles_h
            image = first + t // (tiles_w * tiles_h)
            iy, ix = 2 * ty - pt, 2 * tx - pl
            a0, a4, a8, a12 = _column(x, image, iy, ix, c)  # Bᵀ d: along the tile's rows, a column at a time
            a1, a5, a9, a13 = _column(x, image, iy, ix + 1, c)
            a2, a6, a10, a14 = _column(x, image, iy, ix + 2, c)
            a3, a7, a11, a15 = _column(x, image, iy, ix + 3, c)
            v[0, t, c], v[1, t, c], v[2, t, c], v[3, t, c] = _bt(a0, a1, a2, a3)  # (Bᵀ d) B: along its columns
            v[4, t, c], v[5, t, c], v[6, t, c], v[7, t, c] = _bt(a4, a5, a6, a7)
            v[8, t, c], v[9, t, c], v[10, t, c], v[11, t, c] = _bt(a8, a9, a10, a11)
            v[12, t, c], v[13, t, c], v[14, t, c], v[15, t, c] = _bt(a12, a13, a14, a15)


def winograd_input(x, first, count, geometry, tiles_h, tiles_w, v):
    """v[e, (b·tiles_h + ty)·tiles_w + tx, :] = (Bᵀ d B)[i, j] of the 4×4 tile d at input (2·ty − pad_top,
    2·tx − pad_left) of image first + b (0 outside the image). x: (n, h, w, in); v: (16, count·tiles, in)."""
    _winograd_input[on(*grid2(v.shape[1], v.shape[2]))](x, first, tiles_h, tiles_w, geometry[6], geometry[7], v)


@cuda.jit(**KERNEL)
def _winograd_output_pool(m, bias, first, out_w, pooled, argmax):
    f, row0, row_step = cells()
    tiles_h, tiles_w, filters = pooled.shape[1], pooled.shape[2], pooled.shape[3]
    if f < filters:
        for t in range(row0, m.shape[1], row_step):
            tx = t % tiles_w
            ty = (t // tiles_w) % tiles_h
            b = first + t // (tiles_w * tiles_h)
            # Aᵀ m: the tile's rows 0 + 1 + 2 and 1 − 2 − 3, for each of its columns
            a0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
            a1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
            a2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
            a3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
            b0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
            b1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
            b2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
            b3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
            bias_f = bias[f]  # (…) A: columns 0 + 1 + 2 and 1 − 2 − 3
            base = (2 * ty * out_w + 2 * tx) * filters + f
            pooled[b, ty, tx, f], argmax[b, ty, tx, f] = first_max4(
                a0 + a1 + a2 + bias_f, a1 - a2 - a3 + bias_f, b0 + b1 + b2 + bias_f, b1 - b2 - b3 + bias_f, base,
                filters, out_w * filters)


def winograd_output_pool(m, bias, first, count, out_w, pooled, argmax):
    """pooled, argmax of images [first, first + count) = the maximum of each tile's Aᵀ m A + bias and its first
    cell. m: (16, count·tiles, filters); pooled, argmax (int32): (n, tiles_h, tiles_w, filters)."""
    _winograd_output_pool[on(*grid2(m.shape[1], m.shape[2]))](m, bias, first, out_w, pooled, argmax)


@cuda.jit(device=True)
def _corner(winner, base, filters, out_w):
    """(below, right): which cell of its 2×2 window the flat index `winner` (of filter 0) is."""
    offset, row = winner - base, out_w * filters
    return offset >= row, offset == filters or offset == row + filters


@cuda.jit(**KERNEL)
def _winograd_output_grad(dpooled, argmax, first, out_w, tiles_h, tiles_w, dm):
    f, row0, row_step = cells()
    filters = dm.shape[2]
    if f < filters:
        for t in range(row0, dm.shape[1], row_step):
            tx = t % tiles_w
            ty = (t // tiles_w) % tiles_h
            b = first + t // (tiles_w * tiles_h)
            cell = (ty * tiles_w + tx) * filters + f
            g = dpooled[b, cell]
            down, right = _corner(argmax[b, cell] - f, (2 * ty * out_w + 2 * tx) * filters, filters, out_w)
            # A's column a: (1, 1, 1, 0) for a = 0, (0, 1, −1, −1) for a = 1 (float32 constants: no f64 on the GPU)
            zero, one = np.float32(0.0), np.float32(1.0)
            r0, r1, r2, r3 = (zero, g, -g, -g) if down else (g, g, g, zero)
            c1, c2 = one, (-one if right else one)
            c0, c3 = (zero, -one) if right else (one, zero)
            dm[0, t, f], dm[1, t, f], dm[2, t, f], dm[3, t, f] = r0 * c0, r0 * c1, r0 * c2, r0 * c3
            dm[4, t, f], dm[5, t, f], dm[6, t, f], dm[7, t, f] = r1 * c0, r1 * c1, r1 * c2, r1 * c3
            dm[8, t, f], dm[9, t, f], dm[10, t, f], dm[11, t, f] = r2 * c0, r2 * c1, r2 * c2, r2 * c3
            dm[12, t, f], dm[13, t, f], dm[14, t, f], dm[15, t, f] = r3 * c0, r3 * c1, r3 * c2, r3 * c3


def winograd_output_grad(dpooled, argmax, first, count, out_w, tiles_h, tiles_w, dm):
    """dm[4·i + j, t, f] = A[i, a]·A[j, c]·g for each window's gradient g at its winner (a, c) (winograd_output
    _pool's adjoint). dpooled, argmax (int32): (n, tiles · filters); dm: (16, count·tiles, filters)."""
    _winograd_output_grad[on(*grid2(dm.shape[1], dm.shape[2]))](dpooled, argmax, first, out_w, tiles_h, tiles_w, dm)


@cuda.jit(device=True)
def _b(k, v0, v1, v2, v3):
    """Entry k of B·(v0, v1, v2, v3), B's rows (1, 0, 0, 0), (0, 1, −1, 1), (−1, 1, 1, 0), (0, 0, 0, −1)."""
    if k == 0:
        return v0
    if k == 1:
        return v1 - v2 + v3
    if k == 2:
        return v1 + v2 - v0
    return -v3


@cuda.jit(device=True)
def _b_row(dv, t, i, j, c):
    """Entry j of row i of dV Bᵀ (the CPU's first pass)."""
    return _b(j, dv[4 * i, t, c], dv[4 * i + 1, t, c], dv[4 * i + 2, t, c], dv[4 * i + 3, t, c])


@cuda.jit(**KERNEL)
def _winograd_input_grad(dv, first, count, tiles_h, tiles_w, pt, pl, dx):
    k = cuda.grid(1)
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    if k < count * height * width * channels:
        c = k % channels
        ix = (k // channels) % width
        iy = (k // (channels * width)) % height
        b = k // (channels * width * height)
        total = np.float32(0.0)
        for ty in range(max(0, (iy + pt - 2) // 2), min(tiles_h, (iy + pt) // 2 + 1)):  # the tiles holding the
            i = iy + pt - 2 * ty                                                         # cell, in tile order
            for tx in range(max(0, (ix + pl - 2) // 2), min(tiles_w, (ix + pl) // 2 + 1)):
                j = ix + pl - 2 * tx
                t = (b * tiles_h + ty) * tiles_w + tx
                total += _b(i, _b_row(dv, t, 0, j, c), _b_row(dv, t, 1, j, c), _b_row(dv, t, 2, j, c),
                            _b_row(dv, t, 3, j, c))
        dx[first + b, iy, ix, c] = total


def winograd_input_grad(dv, first, count, geometry, tiles_h, tiles_w, dx):
    """dx of images [first, first + count) = each tile's B dV Bᵀ added onto its 4×4 input patch, in tile order
    (overwritten; cells outside the image dropped). dv: (16, count·tiles, in); dx: (n, h, w, in)."""
    size = count * dx.shape[1] * dx.shape[2] * dx.shape[3]
    _winograd_input_grad[on(*grid1(size))](dv, first, count, tiles_h, tiles_w, geometry[6], geometry[7], dx)


@cuda.jit(**KERNEL)
def _conv3x3_pool_forward(x, kernel, bias, first, count, pt, pl, out_w, pooled, argmax):
    k = cuda.grid(1)
    tiles_h, tiles_w, filters = pooled.shape[1], pooled.shape[2], pooled.shape[3]
    if k < count * tiles_h * tiles_w * filters:
        f = k % filters
        tx = (k // filters) % tiles_w
        ty = (k // (filters * tiles_w)) % tiles_h
        b = first + k // (filters * tiles_w * tiles_h)
        oy, ox, bias_f = 2 * ty, 2 * tx, bias[f]
        pooled[b, ty, tx, f], argmax[b, ty, tx, f] = first_max4(
            conv_at(x, kernel, b, oy, ox, f, 3, 3, 1, 1, 1, 1, pt, pl) + bias_f,
            conv_at(x, kernel, b, oy, ox + 1, f, 3, 3, 1, 1, 1, 1, pt, pl) + bias_f,
            conv_at(x, kernel, b, oy + 1, ox, f, 3, 3, 1, 1, 1, 1, pt, pl) + bias_f,
            conv_at(x, kernel, b, oy + 1, ox + 1, f, 3, 3, 1, 1, 1, 1, pt, pl) + bias_f,
            (oy * out_w + ox) * filters + f, filters, out_w * filters)


def conv3x3_pool_forward(x, kernel, bias, first, count, geometry, pooled, argmax):
    """pooled, argmax of images [first, first + count) for a one-channel input: each 2×2 window's four conv
    outputs (taps in (ki, kj) order) + bias, their maximum and its first cell. x: (n, h, w, 1); kernel:
    (9, filters); pooled, argmax (int32): (n, out_h / 2, out_w / 2, filters). One thread a pooled cell."""
    size = count * pooled.shape[1] * pooled.shape[2] * pooled.shape[3]
    _conv3x3_pool_forward[on(*grid1(size))](x, kernel, bias, first, count, geometry[6], geometry[7], geometry[9],
                                            pooled, argmax)


@cuda.jit(**KERNEL)
def _conv3x3_pool_weight_grad(x, dpooled, argmax, first, count, pt, pl, out_w, tiles_h, tiles_w, dkernel):
    f, row0, row_step = cells()
    filters = dkernel.shape[1]
    if f < filters:
        for tap in range(row0, 9, row_step):
            ki, kj = tap // 3, tap % 3
            total = np.float32(0.0)
            for b in range(first, first + count):
                for ty in range(tiles_h):
                    for tx in range(tiles_w):
                        cell = (ty * tiles_w + tx) * filters + f
                        oy, ox = 2 * ty, 2 * tx
                        down, right = _corner(argmax[b, cell] - f, (oy * out_w + ox) * filters, filters, out_w)
                        iy, ix = oy + down - pt + ki, ox + right - pl + kj  # the tap's cell of the winner's patch
                        inside = 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2]
                        total += dpooled[b, cell] * (x[b, iy, ix, 0] if inside else np.float32(0.0))
            dkernel[tap, f] = total


def conv3x3_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dkernel):
    """dkernel[3·ki + kj, f] = Σ_{b, window (in order)} dpooled[b, window, f] · x[b, winner row + ki, winner
    column + kj] (overwritten; every window adds, a zero gradient too). dpooled, argmax (int32): (n, windows ·
    filters); dkernel: (9, filters). One thread a kernel entry."""
    out_w = geometry[9]
    _conv3x3_pool_weight_grad[on(*grid2(*dkernel.shape))](x, dpooled, argmax, first, count, geometry[6], geometry[7],
                                                          out_w, geometry[8] // 2, out_w // 2, dkernel)


KERNELS = ("winograd_input", "winograd_output_pool", "winograd_output_grad", "winograd_input_grad",
           "conv3x3_pool_forward", "conv3x3_pool_weight_grad")
