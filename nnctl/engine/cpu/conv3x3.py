"""A 3×3 stride-1 conv whose 2×2 max pooling (stride 2) reads its outputs in whole windows, run as one step
(nnctl/nn/layers/conv_pool.py): each window's four outputs are computed together, get their bias, and only their
maximum and its first winner are stored; the full-size conv output never is.

**Many input channels: Winograd F(2×2, 3×3).** Each window's outputs come from a 4×4 input tile with 16
multiplies a (channel, filter) pair instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016):

    Y = Aᵀ [ Σ_c (G g_cf Gᵀ) ⊙ (Bᵀ d_c B) ] A      (d_c a 4×4 tile of channel c, g_cf the 3×3 kernel)

so the convolution becomes 16 GEMMs over the tiles, M_e = V_e · U_e with V_e (tiles, in) and U_e (in, filters)
for the 16 tile cells e, which the layer runs as one batched BLAS call a chunk of images. The kernel's transform
is one small GEMM too, U = (G ⊗ G) · g over the 9 taps (nnctl/engine/convolution.py, KRON_G). MNIST's second
Conv2D (13×13×32 → 64, pooled 5×5): 2.25× fewer multiply-adds in the GEMMs and no column buffer; 2.9 → 1.4 ms a
batch of 64 on one thread here. The rounding differs from the direct sum (a few ulp of float32;
tests/engine/test_conv3x3_kernels.py bounds it); an output row (column) of a tile combines only the three input
rows (columns) the direct sum reads, so a NaN input reaches the same outputs.

    G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]
    Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
    Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]

**One input channel (MNIST's first Conv2D): direct, in registers.** The 16 pixels of the tile are scalars,
each filter's 9 taps a vector load, and the four outputs 36 multiply-adds vectorized over the filters; the
kernel gradient reads the winner's 3×3 patch out of the same 16 pixels with selects. Against the general direct
kernels + pooling (nnctl/engine/cpu/conv.py): 1.36 → 0.56 ms forward, 1.15 → 0.57 ms kernel gradient a batch
of 64 on one thread.

Tile cell e = 4·i + j (row i, column j of the 4×4 tile); tiles (windows) of an image are ordered (row,
column), and tile (ty, tx) covers outputs (2·ty, 2·tx) to (2·ty + 1, 2·tx + 1). argmax holds flat indices
(row·out_w + column)·filters + filter into an image's conv output, as max_pool2d_forward writes them.
"""

import numpy as np
from numba import njit

from nnctl.engine.cpu.pooling import first_max4
from nnctl.engine.settings import KERNEL


@njit(**KERNEL)
def winograd_input(x, first, count, geometry, tiles_h, tiles_w, v):
    """v[e, (b·tiles_h + ty)·tiles_w + tx, :] = (Bᵀ d B)[i, j] for the 4×4 tile d at input (2·ty − pad_top,
    2·tx − pad_left) of image first + b (0 outside the image), every channel at once. x: (n, h, w, in);
    geometry: the conv's (nnctl/engine/cpu/conv.py; 3×3, stride 1); v: (16, count·tiles, in), overwritten."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    pad_top, pad_left = geometry[6], geometry[7]
    d = np.empty((16, channels), v.dtype)
    for b in range(count):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                t = (b * tiles_h + ty) * tiles_w + tx
                for i in range(4):
                    iy = 2 * ty - pad_top + i
                    for j in range(4):
                        ix = 2 * tx - pad_left + j
                        inside = 0 <= iy < height and 0 <= ix < width
                        for c in range(channels):
                            d[4 * i + j, c] = x[first + b, iy, ix, c] if inside else 0.0
                for j in range(4):  # Bᵀ d: along the tile's rows
                    for c in range(channels):
                        d0, d1, d2, d3 = d[j, c], d[4 + j, c], d[8 + j, c], d[12 + j, c]
                        d[j, c] = d0 - d2
                        d[4 + j, c] = d1 + d2
                        d[8 + j, c] = d2 - d1
                        d[12 + j, c] = d1 - d3
                for i in range(4):  # (Bᵀ d) B: along its columns
                    for c in range(channels):
                        d0, d1, d2, d3 = d[4 * i, c], d[4 * i + 1, c], d[4 * i + 2, c], d[4 * i + 3, c]
                        v[4 * i, t, c] = d0 - d2
                        v[4 * i + 1, t, c] = d1 + d2
                        v[4 * i + 2, t, c] = d2 - d1
                        v[4 * i + 3, t, c] = d1 - d3


@njit(**KERNEL)
def winograd_output_pool(m, bias, first, count, out_w, pooled, argmax):
    """The pooled outputs of images [first, first + count) from their tiles' products m: y = Aᵀ m A + bias
    for each tile, then its maximum and the first cell holding it, as max_pool2d_forward's 2×2 fast path
    finds them. m: (16, count·tiles, filters); out_w: the conv output's width (argmax holds flat indices
    (row·out_w + column)·filters + filter into an image's conv output); pooled, argmax (int32):
    (n, tiles_h, tiles_w, filters), images [first, first + count) overwritten."""
    tiles_h, tiles_w, filters = pooled.shape[1], pooled.shape[2], pooled.shape[3]
    for b in range(count):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                t = (b * tiles_h + ty) * tiles_w + tx
                yo, ao = pooled[first + b, ty, tx], argmax[first + b, ty, tx]
                base = (2 * ty * out_w + 2 * tx) * filters
                for f in range(filters):
                    # Aᵀ m: the tile's rows 0 + 1 + 2 and 1 − 2 − 3, for each of its columns
                    a0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
                    a1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
                    a2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
                    a3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
                    b0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
                    b1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
                    b2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
                    b3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
                    bias_f = bias[f]  # (… ) A: columns 0 + 1 + 2 and 1 − 2 − 3
                    yo[f], ao[f] = first_max4(a0 + a1 + a2 + bias_f, a1 - a2 - a3 + bias_f, b0 + b1 + b2 + bias_f,
                                              b1 - b2 - b3 + bias_f, base + f, filters, out_w * filters)


@njit(inline="always", **KERNEL)
def _corner(winner, base, filters, out_w):
    """(below, right): which cell of its 2×2 window the flat index `winner` is (base: the window's first cell's
    index for filter 0; winner − base − f is 0, filters, out_w·filters or (out_w + 1)·filters)."""
    offset, row = winner - base, out_w * filters
    return offset >= row, (offset == filters) | (offset == row + filters)


@njit(**KERNEL)
def winograd_output_grad(dpooled, argmax, first, count, out_w, tiles_h, tiles_w, dm):
    """The tiles' products' gradient from the pooled outputs' (winograd_output_pool's adjoint): only each
    window's winner (a, c) has a gradient g, and dm[4·i + j, t, f] = A[i, a]·A[j, c]·g (A = (Aᵀ)ᵀ, entries 0
    and ±1). dpooled, argmax (int32): (n, tiles · filters); dm: (16, count·tiles, filters), overwritten."""
    filters = dm.shape[2]
    for b in range(count):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                t = (b * tiles_h + ty) * tiles_w + tx
                cell = (ty * tiles_w + tx) * filters
                base = (2 * ty * out_w + 2 * tx) * filters
                grads, wins = dpooled[first + b, cell:cell + filters], argmax[first + b, cell:cell + filters]
                for f in range(filters):
                    g = grads[f]
                    down, right = _corner(wins[f] - f, base, filters, out_w)
                    # A's column a: (1, 1, 1, 0) for a = 0, (0, 1, −1, −1) for a = 1
                    r0, r1, r2, r3 = (0.0, g, -g, -g) if down else (g, g, g, 0.0)
                    c1, c2 = 1.0, (-1.0 if right else 1.0)
                    c0, c3 = (0.0, -1.0) if right else (1.0, 0.0)
                    dm[0, t, f], dm[1, t, f], dm[2, t, f], dm[3, t, f] = r0 * c0, r0 * c1, r0 * c2, r0 * c3
                    dm[4, t, f], dm[5, t, f], dm[6, t, f], dm[7, t, f] = r1 * c0, r1 * c1, r1 * c2, r1 * c3
                    dm[8, t, f], dm[9, t, f], dm[10, t, f], dm[11, t, f] = r2 * c0, r2 * c1, r2 * c2, r2 * c3
                    dm[12, t, f], dm[13, t, f], dm[14, t, f], dm[15, t, f] = r3 * c0, r3 * c1, r3 * c2, r3 * c3


@njit(**KERNEL)
def winograd_input_grad(dv, first, count, geometry, tiles_h, tiles_w, dx):
    """dx of images [first, first + count) from the tiles' transformed gradient (winograd_input's adjoint):
    each tile adds B dV Bᵀ onto its 4×4 input patch, in tile order (cells outside the image dropped).
    dv: (16, count·tiles, in); dx: (n, h, w, in), those images overwritten."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    pad_top, pad_left = geometry[6], geometry[7]
    d = np.empty((16, channels), dv.dtype)
    for b in range(count):
        dx[first + b] = 0.0
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                t = (b * tiles_h + ty) * tiles_w + tx
                for i in range(4):  # dV B... Bᵀ's columns: (1, 0, 0, 0), (0, 1, −1, 1), (−1, 1, 1, 0), (0, 0, 0, −1)
                    for c in range(channels):
                        v0, v1, v2, v3 = dv[4 * i, t, c], dv[4 * i + 1, t, c], dv[4 * i + 2, t, c], dv[4 * i + 3, t, c]
                        d[4 * i, c] = v0
                        d[4 * i + 1, c] = v1 - v2 + v3
                        d[4 * i + 2, c] = v1 + v2 - v0
                        d[4 * i + 3, c] = -v3
                for j in range(4):  # ... then B (dV Bᵀ)... along the rows the same
                    for c in range(channels):
                        v0, v1, v2, v3 = d[j, c], d[4 + j, c], d[8 + j, c], d[12 + j, c]
                        d[j, c] = v0
                        d[4 + j, c] = v1 - v2 + v3
                        d[8 + j, c] = v1 + v2 - v0
                        d[12 + j, c] = -v3
                for i in range(4):
                    iy = 2 * ty - pad_top + i
                    if iy < 0 or iy >= height:
                        continue
                    for j in range(4):
                        ix = 2 * tx - pad_left + j
                        if 0 <= ix < width:
                            for c in range(channels):
                                dx[first + b, iy, ix, c] += d[4 * i + j, c]


@njit(inline="always", **KERNEL)
def _tile(x, image, ty, tx, pad_top, pad_left, p):
    """p[4·i + j] = x[image, 2·ty − pad_top + i, 2·tx − pad_left + j, 0] (0 outside the image)."""
    height, width = x.shape[1], x.shape[2]
    for i in range(4):
        iy = 2 * ty - pad_top + i
        for j in range(4):
            ix = 2 * tx - pad_left + j
            p[4 * i + j] = x[image, iy, ix, 0] if 0 <= iy < height and 0 <= ix < width else 0.0


@njit(**KERNEL)
def conv3x3_pool_forward(x, kernel, bias, first, count, geometry, pooled, argmax):
    """The pooled outputs of images [first, first + count) for a one-channel input. x: (n, h, w, 1); kernel:
    (9, filters); bias: (filters,); pooled, argmax (int32): (n, out_h / 2, out_w / 2, filters).

        for b, window (ty, tx), f: y[a, c] = Σ_{ki, kj} x[b, 2·ty + a + ki, 2·tx + c + kj] · kernel[3·ki + kj, f]
                                   pooled, argmax = the maximum of y + bias[f] and its first cell (row-major)
    """
    filters, out_w = kernel.shape[1], geometry[9]
    pad_top, pad_left = geometry[6], geometry[7]
    p = np.empty(16, x.dtype)
    for b in range(first, first + count):
        for ty in range(pooled.shape[1]):
            for tx in range(pooled.shape[2]):
                _tile(x, b, ty, tx, pad_top, pad_left, p)
                p0, p1, p2, p3, p4, p5, p6, p7 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
                p8, p9, p10, p11, p12, p13, p14, p15 = p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]
                yo, ao = pooled[b, ty, tx], argmax[b, ty, tx]
                base = (2 * ty * out_w + 2 * tx) * filters
                for f in range(filters):
                    k0, k1, k2 = kernel[0, f], kernel[1, f], kernel[2, f]
                    k3, k4, k5 = kernel[3, f], kernel[4, f], kernel[5, f]
                    k6, k7, k8 = kernel[6, f], kernel[7, f], kernel[8, f]
                    y00 = p0 * k0 + p1 * k1 + p2 * k2 + p4 * k3 + p5 * k4 + p6 * k5 + p8 * k6 + p9 * k7 + p10 * k8
                    y01 = p1 * k0 + p2 * k1 + p3 * k2 + p5 * k3 + p6 * k4 + p7 * k5 + p9 * k6 + p10 * k7 + p11 * k8
                    y10 = p4 * k0 + p5 * k1 + p6 * k2 + p8 * k3 + p9 * k4 + p10 * k5 + p12 * k6 + p13 * k7 + p14 * k8
                    y11 = p5 * k0 + p6 * k1 + p7 * k2 + p9 * k3 + p10 * k4 + p11 * k5 + p13 * k6 + p14 * k7 + p15 * k8
                    bias_f = bias[f]
                    yo[f], ao[f] = first_max4(y00 + bias_f, y01 + bias_f, y10 + bias_f, y11 + bias_f, base + f,
                                              filters, out_w * filters)


@njit(**KERNEL)
def conv3x3_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dkernel):
    """The kernel gradient of images [first, first + count) from their pooled pre-activations' gradient, for
    conv3x3_pool_forward. dpooled, argmax (int32): (n, windows · filters); dkernel: (9, filters), overwritten.

        dkernel[3·ki + kj, f] = Σ_{b, window (in order)} dpooled[b, window, f] · x[b, winner row + ki, winner col + kj]
    """
    filters, out_w = dkernel.shape[1], geometry[9]
    pad_top, pad_left = geometry[6], geometry[7]
    tiles_h, tiles_w = geometry[8] // 2, out_w // 2
    p = np.empty(16, x.dtype)
    total = np.zeros((9, filters), dkernel.dtype)  # summed here, written once: another thread may be writing
    for b in range(first, first + count):         # the next chunk's partial, on the same cache line
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                _tile(x, b, ty, tx, pad_top, pad_left, p)
                p0, p1, p2, p3, p4, p5, p6, p7 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
                p8, p9, p10, p11, p12, p13, p14, p15 = p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]
                cell = (ty * tiles_w + tx) * filters
                base = (2 * ty * out_w + 2 * tx) * filters
                grads, wins = dpooled[b, cell:cell + filters], argmax[b, cell:cell + filters]
                for f in range(filters):
                    g = grads[f]
                    down, right = _corner(wins[f] - f, base, filters, out_w)
                    if down:  # the winner's patch: rows 1-3 of the tile …
                        q0, q1, q2 = (p5, p6, p7) if right else (p4, p5, p6)
                        q3, q4, q5 = (p9, p10, p11) if right else (p8, p9, p10)
                        q6, q7, q8 = (p13, p14, p15) if right else (p12, p13, p14)
                    else:  # … or rows 0-2; columns 1-3 if it is on the right, else 0-2
                        q0, q1, q2 = (p1, p2, p3) if right else (p0, p1, p2)
                        q3, q4, q5 = (p5, p6, p7) if right else (p4, p5, p6)
                        q6, q7, q8 = (p9, p10, p11) if right else (p8, p9, p10)
                    total[0, f] += g * q0
                    total[1, f] += g * q1
                    total[2, f] += g * q2
                    total[3, f] += g * q3
                    total[4, f] += g * q4
                    total[5, f] += g * q5
                    total[6, f] += g * q6
                    total[7, f] += g * q7
                    total[8, f] += g * q8
    for tap in range(9):  # (a loop: an array assignment compiles its shape-mismatch message, 2 s here)
        for f in range(filters):
            dkernel[tap, f] = total[tap, f]


KERNELS = ("winograd_input", "winograd_output_pool", "winograd_output_grad", "winograd_input_grad",
           "conv3x3_pool_forward", "conv3x3_pool_weight_grad")
