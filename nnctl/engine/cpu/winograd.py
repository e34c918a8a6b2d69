"""Winograd F(2×2, 3×3) for a 3×3 stride-1 conv followed by 2×2 max pooling (nnctl/nn/layers/conv_pool.py).

Each 2×2 block of outputs (one pooling window) comes from a 4×4 input tile with 16 multiplies a (channel,
filter) pair instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):

    Y = Aᵀ [ Σ_c (G g_cf Gᵀ) ⊙ (Bᵀ d_c B) ] A      (d_c a 4×4 tile of channel c, g_cf the 3×3 kernel)

so the convolution becomes 16 GEMMs over the tiles, M_e = V_e · U_e with V_e (tiles, in) and U_e (in, filters)
for the 16 tile cells e, which the layer runs as one batched BLAS call a chunk of images. The kernel's transform
is one small GEMM too, U = (G ⊗ G) · g over the 9 taps (nnctl/engine/convolution.py, KRON_G). The output transform
adds the bias and takes each window's maximum and its first winner at once, so the full-size conv output is
never stored. MNIST's second Conv2D (13×13×32 → 64, pooled 5×5): 2.25× fewer multiply-adds in the GEMMs and no
column buffer; 2.9 → 1.5 ms a batch of 64 on one thread here. The rounding differs from the direct sum (a few
ulp of float32; tests/engine/test_winograd.py bounds it), the bytes depend on nothing but the inputs.

    G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]
    Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
    Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]

Tile cell e = 4·i + j (row i, column j of the 4×4 tile); tiles of an image are ordered (tile row, tile column),
and tile (ty, tx) covers outputs (2·ty, 2·tx) to (2·ty + 1, 2·tx + 1), which pooling window (ty, tx) reads.
"""

import numpy as np
from numba import njit

from nnctl.engine.cpu.pooling import _wins
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
                    bias_f = bias[f]
                    best, at = a0 + a1 + a2 + bias_f, base + f  # (… ) A: columns 0 + 1 + 2 and 1 − 2 − 3
                    v = a1 - a2 - a3 + bias_f
                    best, at = (v, base + filters + f) if _wins(v, best) else (best, at)
                    v = b0 + b1 + b2 + bias_f
                    best, at = (v, base + out_w * filters + f) if _wins(v, best) else (best, at)
                    v = b1 - b2 - b3 + bias_f
                    best, at = (v, base + (out_w + 1) * filters + f) if _wins(v, best) else (best, at)
                    yo[f], ao[f] = best, at


KERNELS = ("winograd_input", "winograd_output_pool")
