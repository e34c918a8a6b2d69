"""Plain-NumPy oracles for the conv kernels (nnctl/engine/cpu/conv.py): same names and arguments.

Written for clarity, not speed: padding by np.pad and one slice per kernel tap.
"""

import numpy as np

from nnctl.engine.reference_pooling import max_pool2d_forward, max_pool_backward


def _taps(geometry, height, width):
    """Yields (ki, kj, rows, columns): the input positions tap (ki, kj) reads, in a zero-padded image."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    for ki in range(kh):
        for kj in range(kw):
            rows = np.arange(out_h) * sh + ki * dh
            columns = np.arange(out_w) * sw + kj * dw
            yield ki, kj, rows, columns


def _padded(x, geometry):
    kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    bottom = max(0, (out_h - 1) * sh + (kh - 1) * dh + 1 - x.shape[1] - pad_top)
    right = max(0, (out_w - 1) * sw + (kw - 1) * dw + 1 - x.shape[2] - pad_left)
    return np.pad(x, ((0, 0), (pad_top, bottom), (pad_left, right), (0, 0)))


def im2col(x, first, count, geometry, cols):
    kh, kw = geometry[:2]
    out_h, out_w = geometry[8:]
    channels = x.shape[3]
    padded = _padded(x[first:first + count], geometry)
    patches = np.zeros((count, out_h, out_w, kh, kw, channels), x.dtype)
    for ki, kj, rows, columns in _taps(geometry, *x.shape[1:3]):
        patches[:, :, :, ki, kj, :] = padded[:, rows][:, :, columns]
    cols[...] = patches.reshape(cols.shape)


def col2im(cols, first, count, geometry, dx):
    kh, kw = geometry[:2]
    pad_top, pad_left, out_h, out_w = geometry[6:]
    height, width, channels = dx.shape[1:]
    padded = _padded(np.zeros((count, height, width, channels), np.float64), geometry)
    patches = cols.reshape(count, out_h, out_w, kh, kw, channels)
    for ki, kj, rows, columns in _taps(geometry, height, width):
        np.add.at(padded, (slice(None), rows[:, None], columns[None, :]), patches[:, :, :, ki, kj, :])
    dx[first:first + count] = padded[:, pad_top:pad_top + height, pad_left:pad_left + width]


def conv_direct_forward(x, kernel, first, count, geometry, z):
    kh, kw = geometry[:2]
    cols = np.zeros((z.shape[0], kh * kw * x.shape[3]), np.float64)
    im2col(x.astype(np.float64), first, count, geometry, cols)
    z[...] = cols @ kernel


def conv_direct_weight_grad(x, dz, first, count, geometry, dkernel):
    kh, kw = geometry[:2]
    cols = np.zeros((dz.shape[0], kh * kw * x.shape[3]), np.float64)
    im2col(x.astype(np.float64), first, count, geometry, cols)
    dkernel[...] = cols.T @ dz


def conv_taps_sum(y, count, height, width, geometry, z):
    kh, kw = geometry[:2]
    _, _, _, _, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    taps = y.reshape(count, height, width, kh * kw, z.shape[1])
    total = np.zeros((count, out_h, out_w, z.shape[1]))
    for ki in range(kh):
        for kj in range(kw):
            for oy in range(out_h):
                for ox in range(out_w):
                    iy, ix = oy - pad_top + ki * dh, ox - pad_left + kj * dw
                    if 0 <= iy < height and 0 <= ix < width:
                        total[:, oy, ox] += taps[:, iy, ix, ki * kw + kj]
    z[...] = total.reshape(z.shape)


def conv_taps_spread(dz, count, height, width, geometry, spread):
    kh, kw = geometry[:2]
    _, _, _, _, dh, dw, pad_top, pad_left, out_h, out_w = geometry
    filters = dz.shape[1]
    out = np.zeros((count, height, width, kh * kw, filters))
    grads = dz.reshape(count, out_h, out_w, filters)
    for ki in range(kh):
        for kj in range(kw):
            for oy in range(out_h):
                for ox in range(out_w):
                    iy, ix = oy - pad_top + ki * dh, ox - pad_left + kj * dw
                    if 0 <= iy < height and 0 <= ix < width:
                        out[:, iy, ix, ki * kw + kj] = grads[:, oy, ox]
    spread[...] = out.reshape(spread.shape)


def sum_partials(partials, count, out):
    out[...] = partials[:count].sum(axis=0)


def conv_direct_pool_forward(x, kernel, bias, first, count, geometry, window, z, pooled, argmax):
    out_h, out_w = geometry[8:]
    for b in range(first, first + count):
        conv_direct_forward(x, kernel, b, 1, geometry, z)
        z += bias
        max_pool2d_forward(z.reshape(1, out_h, out_w, -1), *window, pooled[b:b + 1], argmax[b:b + 1])


def conv_direct_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dz, one, dkernel):
    dkernel[...] = 0
    for b in range(first, first + count):
        max_pool_backward(dpooled[b:b + 1], argmax[b:b + 1], dz.reshape(1, -1))
        conv_direct_weight_grad(x, dz, b, 1, geometry, one)
        dkernel += one


def _unpooled(dpooled, argmax, first, count, positions, filters):
    """The chunk's gradient w.r.t. the conv output: each pooled cell's gradient at its window's winner."""
    dz = np.zeros((count, positions * filters))
    for b in range(count):
        np.add.at(dz[b], argmax[first + b], dpooled[first + b])
    return dz.reshape(count * positions, filters)


def conv_pooled_weight_grad(cols, dpooled, argmax, first, count, positions, dkernel):
    dkernel[...] = cols.astype(np.float64).T @ _unpooled(dpooled, argmax, first, count, positions, dkernel.shape[1])


def conv_pooled_columns_grad(dpooled, argmax, kernel_t, first, count, positions, dcols):
    dcols[...] = _unpooled(dpooled, argmax, first, count, positions, kernel_t.shape[0]) @ kernel_t

