"""CPU kernels of the conv layer family (Numba `@njit`, cached); `KERNELS` names the ones the backend exports.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_conv.py.
"""

import numpy as np
from numba import njit

from nnctl.engine.cpu.pooling import max_pool2d_forward, max_pool_backward
from nnctl.engine.cpu.simd import LANES, gather_row, scatter_16, scatter_masked
from nnctl.engine.settings import KERNEL

# nogil: nnctl/engine/convolution.py runs the chunks of one call on a small thread pool.
CONV_KERNEL = {**KERNEL, "nogil": True}

# Shared arguments. Images are channels-last 4-D, (n, height, width, channels); Conv1D passes height 1.
#   first, count: the images [first, first + count) of the batch this call works on (one chunk);
#   geometry: (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w) — kernel size, strides, dilation, the
#             zero padding before each axis, and the output size;
#   a column row is one output position of one image, (b·out_h + oy)·out_w + ox for b = image − first; its
#   entries are ordered (ki, kj, c) like a Keras kernel (kh, kw, in, out) reshaped to (kh·kw·in, out).


@njit(inline="always", **CONV_KERNEL)
def _unfold(flat, height, width, channels, image, oy, ox, geometry, dst):
    """dst[(ki·kw + kj)·c + ch] = x[image, iy, ix, ch] (0 outside the image): one column row. flat: x raveled.

    A kernel row lying inside the image (no horizontal dilation) is one contiguous run of kw·c values: one
    copy loop instead of a bounds check per tap (3× faster for MNIST's 1-channel first layer)."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    run = kw * channels
    ix0 = ox * sw - pad_left
    contiguous = dw == 1 and ix0 >= 0 and ix0 + kw <= width
    for ki in range(kh):
        iy = oy * sh - pad_top + ki * dh
        base = ki * run
        if iy < 0 or iy >= height:
            for t in range(run):
                dst[base + t] = 0.0
        elif contiguous:
            src = ((image * height + iy) * width + ix0) * channels
            for t in range(run):
                dst[base + t] = flat[src + t]
        else:
            for kj in range(kw):
                ix = ix0 + kj * dw
                at = base + kj * channels
                if 0 <= ix < width:
                    src = ((image * height + iy) * width + ix) * channels
                    for ch in range(channels):
                        dst[at + ch] = flat[src + ch]
                else:
                    for ch in range(channels):
                        dst[at + ch] = 0.0


@njit(**CONV_KERNEL)
def im2col(x, first, count, geometry, cols):
    """Unfolds `count` images into patch rows. x: (n, h, w, c); cols: (count·out_h·out_w, kh·kw·c).

        for b, oy, ox, ki, kj: iy = oy·sh − pad_top + ki·dh; ix = ox·sw − pad_left + kj·dw
            cols[row(b, oy, ox), (ki·kw + kj)·c : +c] = x[first + b, iy, ix, :]   (zeros outside the image)
    """
    out_h, out_w = geometry[8], geometry[9]
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    flat = x.reshape(x.size)
    for b in range(count):
        for oy in range(out_h):
            for ox in range(out_w):
                _unfold(flat, height, width, channels, first + b, oy, ox, geometry,
                        cols[(b * out_h + oy) * out_w + ox])


@njit(**CONV_KERNEL)
def col2im(cols, first, count, geometry, dx):
    """Folds patch-row gradients back onto `count` images (im2col's adjoint). cols: (count·out_h·out_w,
    kh·kw·c); dx: (n, h, w, c), images [first, first + count) overwritten.

        dx[first : first + count] = 0
        for b, oy, ox, ki, kj (in this order, so the sums' order is fixed):
            dx[first + b, iy, ix, :] += cols[row(b, oy, ox), (ki·kw + kj)·c : +c]    (inside the image)
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    for b in range(count):
        image = first + b
        for iy in range(height):
            for ix in range(width):
                for c in range(channels):
                    dx[image, iy, ix, c] = 0.0
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for ki in range(kh):
                    iy = oy * sh - pad_top + ki * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kj in range(kw):
                        ix = ox * sw - pad_left + kj * dw
                        if 0 <= ix < width:
                            base = (ki * kw + kj) * channels
                            for c in range(channels):
                                dx[image, iy, ix, c] += cols[row, base + c]


@njit(inline="always", **CONV_KERNEL)
def _span(out_len, stride, pad, dilation, tap, size):
    """[lo, hi): the outputs o whose input o·stride − pad + tap·dilation lies in [0, size)."""
    offset = tap * dilation - pad
    lo = (-offset + stride - 1) // stride if offset < 0 else 0
    hi = min(out_len, (size - 1 - offset) // stride + 1) if size - 1 - offset >= 0 else 0
    return min(lo, hi), hi


# The direct kernels work on one output row (b, oy) at a time: its out_w × filters block of z stays in L1,
# and each (tap, channel) is one vector-block pass over the row's positions with that tap inside the image
# (a strided view of x supplies the scales). Measured on MNIST's first layer (1 channel, 3×3, 32 filters),
# one thread: forward 1.13 ms, kernel gradient 0.89 ms a batch of 64, against 1.43 / 1.38 ms for a patch-
# per-position loop and 1.21 / 1.39 ms for im2col + BLAS.


@njit(**CONV_KERNEL)
def conv_direct_forward(x, kernel, first, count, geometry, z):
    """Convolution without a column buffer, for a tiny patch (a 9-deep BLAS GEMM spends its time on the
    columns). x: (n, h, w, c); kernel: (kh·kw·c, filters); z: (count·out_h·out_w, filters), overwritten.

        for b, oy: z[row(b, oy, :), :] = 0
            for ki, kj, ch, ox with the tap inside the image:                       (simd.scatter_16)
                z[row(b, oy, ox), :] += x[first + b, iy, ix, ch] · kernel[(ki·kw + kj)·c + ch, :]
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    filters = kernel.shape[1]
    positions = np.arange(out_w)
    for b in range(count):
        image = first + b
        for oy in range(out_h):
            row0 = (b * out_h + oy) * out_w
            block = z[row0:row0 + out_w]
            block[:, :] = 0.0
            for ki in range(kh):
                iy = oy * sh - pad_top + ki * dh
                if iy < 0 or iy >= height:
                    continue
                for kj in range(kw):
                    lo, hi = _span(out_w, sw, pad_left, dw, kj, width)
                    if lo == hi:
                        continue
                    ix = lo * sw - pad_left + kj * dw
                    for ch in range(channels):
                        scales = x[image, iy, ix:ix + (hi - lo - 1) * sw + 1:sw, ch]
                        tap = (ki * kw + kj) * channels + ch
                        col = 0
                        while col + LANES <= filters:
                            scatter_16(kernel, tap, col, positions[lo:hi], scales, 0, hi - lo, block, LANES)
                            col += LANES
                        if col < filters:
                            scatter_masked(kernel, tap, col, positions[lo:hi], scales, 0, hi - lo, block,
                                           filters - col)


@njit(**CONV_KERNEL)
def conv_direct_weight_grad(x, dz, first, count, geometry, dkernel):
    """The kernel gradient of `count` images for a tiny patch, without a column buffer. x: (n, h, w, c);
    dz: (count·out_h·out_w, filters); dkernel: (kh·kw·c, filters), overwritten.

        dkernel = 0
        for b, oy, ki, kj, ch (in this order):                                      (simd.gather_row)
            dkernel[(ki·kw + kj)·c + ch, :] += Σ_{ox, tap inside} x[first + b, iy, ix, ch] · dz[row(b, oy, ox), :]
    """
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    filters = dkernel.shape[1]
    row_sum = np.empty((1, filters), dz.dtype)
    dkernel[:, :] = 0.0
    for b in range(count):
        image = first + b
        for oy in range(out_h):
            row0 = (b * out_h + oy) * out_w
            for ki in range(kh):
                iy = oy * sh - pad_top + ki * dh
                if iy < 0 or iy >= height:
                    continue
                for kj in range(kw):
                    lo, hi = _span(out_w, sw, pad_left, dw, kj, width)
                    if lo == hi:
                        continue
                    ix = lo * sw - pad_left + kj * dw
                    for ch in range(channels):
                        scales = x[image, iy, ix:ix + (hi - lo - 1) * sw + 1:sw, ch]
                        tap = (ki * kw + kj) * channels + ch
                        gather_row(dz[row0 + lo:row0 + hi], None, scales, 0, hi - lo, row_sum, 0)
                        for f in range(filters):
                            dkernel[tap, f] += row_sum[0, f]


# The tap-shift form (stride 1, more input channels than filters: IMDB's Conv1D(32, 7) on 128 features).
# Instead of unfolding the input kh·kw times (im2col), one GEMM gives every input position's product with
# every tap, y = x·[W_0 | W_1 | …] (h·w, taps·filters), and the output adds the taps' shifted columns; the
# backward spreads dz into the same (h·w, taps·filters) layout, after which dx = spread·Wᵀ and
# dW = xᵀ·spread are one GEMM each, with no col2im. Buffers are taps·filters wide instead of taps·channels.


@njit(**CONV_KERNEL)
def conv_taps_sum(y, count, height, width, geometry, z):
    """z[b, oy, ox, :] = Σ_{ki, kj inside the image} y[b, iy, ix, (ki·kw + kj)·f : +f] with iy = oy − pad_top
    + ki·dh, ix = ox − pad_left + kj·dw (stride 1). y: (count·h·w, taps·f); z: (count·out_h·out_w, f)."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    filters = z.shape[1]
    for b in range(count):
        for oy in range(out_h):
            for ox in range(out_w):
                row = (b * out_h + oy) * out_w + ox
                for f in range(filters):
                    z[row, f] = 0.0
                for ki in range(kh):
                    iy = oy - pad_top + ki * dh
                    if iy < 0 or iy >= height:
                        continue
                    for kj in range(kw):
                        ix = ox - pad_left + kj * dw
                        if ix < 0 or ix >= width:
                            continue
                        src = (b * height + iy) * width + ix
                        col = (ki * kw + kj) * filters
                        for f in range(filters):
                            z[row, f] += y[src, col + f]


@njit(**CONV_KERNEL)
def conv_taps_spread(dz, count, height, width, geometry, spread):
    """conv_taps_sum's adjoint: spread[b, iy, ix, (ki·kw + kj)·f + :] = dz[b, oy, ox, :] for oy = iy + pad_top
    − ki·dh, ox = ix + pad_left − kj·dw inside the output, else 0. dz: (count·out_h·out_w, f);
    spread: (count·h·w, taps·f), overwritten."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    filters = dz.shape[1]
    for b in range(count):
        for iy in range(height):
            for ix in range(width):
                dst = (b * height + iy) * width + ix
                for ki in range(kh):
                    oy = iy + pad_top - ki * dh
                    for kj in range(kw):
                        ox = ix + pad_left - kj * dw
                        col = (ki * kw + kj) * filters
                        if 0 <= oy < out_h and 0 <= ox < out_w:
                            src = (b * out_h + oy) * out_w + ox
                            for f in range(filters):
                                spread[dst, col + f] = dz[src, f]
                        else:
                            for f in range(filters):
                                spread[dst, col + f] = 0.0


@njit(**CONV_KERNEL)
def sum_partials(partials, count, out):
    """out = partials[0] + partials[1] + … + partials[count − 1], added in that order (the per-chunk kernel
    gradients, so the bytes never depend on which thread finished first). partials: (chunks, k, f); out: (k, f).
    """
    for p in range(out.shape[0]):
        for f in range(out.shape[1]):
            out[p, f] = partials[0, p, f]
    for i in range(1, count):
        for p in range(out.shape[0]):
            for f in range(out.shape[1]):
                out[p, f] += partials[i, p, f]


# A direct conv fused with the max pooling after it (nnctl/nn/layers/conv_pool.py): a chunk's images in one call,
# each convolved into (and its gradient unpooled into) a one-image scratch that stays in L2. One call per
# image of each step was ~10 µs of dispatch holding the GIL against ~25 µs of arithmetic: on two threads the
# pair ran slower than on one.

@njit(**CONV_KERNEL)
def conv_direct_pool_forward(x, kernel, bias, first, count, geometry, window, z, pooled, argmax):
    """The pooled pre-activations of images [first, first + count). kernel: (kh·kw·c, filters); bias:
    (filters,); window: max pooling's (ph, pw, sh, sw, pt, pl); z: (out_h·out_w, filters) scratch;
    pooled, argmax (int32): (n, ph_out, pw_out, filters).

        for b: z = conv_direct_forward(x[b]) + bias;  pooled[b], argmax[b] = max_pool2d_forward(z)
    """
    out_h, out_w, filters = geometry[8], geometry[9], kernel.shape[1]
    ph, pw, sh, sw, pt, pl = window
    image = z.reshape((1, out_h, out_w, filters))
    for b in range(first, first + count):
        conv_direct_forward(x, kernel, b, 1, geometry, z)
        for r in range(z.shape[0]):
            for f in range(filters):
                z[r, f] += bias[f]
        max_pool2d_forward(image, ph, pw, sh, sw, pt, pl, pooled[b:b + 1], argmax[b:b + 1])


@njit(**CONV_KERNEL)
def conv_direct_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dz, one, dkernel):
    """The kernel gradient of images [first, first + count) from their pooled pre-activations' gradient.
    dpooled, argmax (int32): (n, pooled cells · filters); dz: (out_h·out_w, filters) and one: (kh·kw·c,
    filters) scratch; dkernel: (kh·kw·c, filters), overwritten.

        for b: dz = max_pool_backward(dpooled[b]);  dkernel (+)= conv_direct_weight_grad(x[b], dz)
        (the first image's written, each next one's computed into `one` and added, in image order)
    """
    flat = dz.reshape((1, dz.size))
    for b in range(first, first + count):
        max_pool_backward(dpooled[b:b + 1], argmax[b:b + 1], flat)
        conv_direct_weight_grad(x, dz, b, 1, geometry, dkernel if b == first else one)
        if b > first:
            for p in range(dkernel.shape[0]):
                for f in range(dkernel.shape[1]):
                    dkernel[p, f] += one[p, f]


# A columns-plan conv fused with the max pooling after it: only each window's winner has a gradient, so the
# backward's two GEMMs over the unpooled gradient (a quarter of it non-zero for 2×2 windows, less behind a ReLU)
# become register-blocked sums over the pooled cells (simd.gather_row), with no unpooled gradient written.
# dpooled and argmax are (n, pooled cells · filters); argmax holds flat indices (position · filters + filter)
# into an image's conv output.

@njit(**CONV_KERNEL)
def conv_pooled_weight_grad(cols, dpooled, argmax, first, count, positions, dkernel):
    """The kernel gradient of images [first, first + count) from their column rows and pooled gradient.
    cols: (count·positions, depth), the chunk's column rows; dkernel: (depth, filters), overwritten.

        dkernel[:, f] = Σ_{b, cell (in this order), g = dpooled[b, cell·F + f] ≠ 0} g · cols[b·positions + winner]
    """
    depth, filters = dkernel.shape
    cells = dpooled.shape[1] // filters
    rows, scales = np.empty(count * cells, np.int64), np.empty(count * cells, dkernel.dtype)
    transposed = np.empty((filters, depth), dkernel.dtype)
    for f in range(filters):
        m = 0
        for b in range(count):
            grads, wins = dpooled[first + b], argmax[first + b]
            for c in range(cells):
                g = grads[c * filters + f]
                if g != 0:
                    rows[m], scales[m] = b * positions + wins[c * filters + f] // filters, g
                    m += 1
        gather_row(cols, rows, scales, 0, m, transposed, f)
    for p in range(depth):
        for f in range(filters):
            dkernel[p, f] = transposed[f, p]


@njit(**CONV_KERNEL)
def conv_pooled_columns_grad(dpooled, argmax, kernel_t, first, count, positions, dcols):
    """The column rows' gradient of images [first, first + count) (col2im makes it dx). kernel_t: (filters,
    depth), the kernel transposed; dcols: (count·positions, depth), overwritten.

        dcols[b·positions + pos] = Σ_{cell, f (in order) winning at pos, g = dpooled[b, cell·F + f] ≠ 0} g · kernel_t[f]
    """
    filters = kernel_t.shape[0]
    size = dpooled.shape[1]
    starts = np.empty(positions + 1, np.int64)
    fill = np.empty(positions, np.int64)
    which, scales = np.empty(size, np.int64), np.empty(size, dcols.dtype)
    for b in range(count):
        grads, wins = dpooled[first + b], argmax[first + b]
        starts[:] = 0
        for k in range(size):  # a counting sort of the image's non-zero cells by winning position
            if grads[k] != 0:
                starts[wins[k] // filters + 1] += 1
        for pos in range(positions):
            starts[pos + 1] += starts[pos]
            fill[pos] = starts[pos]
        for k in range(size):
            if grads[k] != 0:
                pos = wins[k] // filters
                which[fill[pos]], scales[fill[pos]] = k % filters, grads[k]
                fill[pos] += 1
        for pos in range(positions):
            gather_row(kernel_t, which, scales, starts[pos], starts[pos + 1], dcols, b * positions + pos)


KERNELS = ("im2col", "col2im", "conv_direct_forward", "conv_direct_weight_grad", "conv_taps_sum", "conv_taps_spread",
           "sum_partials", "conv_direct_pool_forward", "conv_direct_pool_weight_grad", "conv_pooled_weight_grad",
           "conv_pooled_columns_grad")
