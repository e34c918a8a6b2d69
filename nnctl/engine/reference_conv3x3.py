"""Plain-NumPy oracles for the kernels of nnctl/engine/cpu/conv3x3.py: same names and arguments; each Winograd
stage as one einsum over its transform matrices, the one-channel kernels through reference_conv's."""

import numpy as np

from nnctl.engine.reference_conv import conv_direct_pool_forward, conv_direct_pool_weight_grad
from nnctl.engine.reference_pooling import max_pool2d_forward, max_pool_backward

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_input(x, first, count, geometry, tiles_h, tiles_w, v):
    pad_top, pad_left = geometry[6], geometry[7]
    height, width = x.shape[1:3]
    bottom, right = max(0, 2 * tiles_h + 2 - pad_top - height), max(0, 2 * tiles_w + 2 - pad_left - width)
    padded = np.pad(x[first:first + count].astype(np.float64),
                    ((0, 0), (pad_top, bottom), (pad_left, right), (0, 0)))
    tiles = np.stack([np.stack([padded[:, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] for tx in range(tiles_w)], 1)
                      for ty in range(tiles_h)], 1)  # (count, tiles_h, tiles_w, 4, 4, c)
    v[...] = np.einsum("ai,nyxijc,bj->abnyxc", _BT, tiles, _BT).reshape(v.shape)


def winograd_output_pool(m, bias, first, count, out_w, pooled, argmax):
    tiles_h, tiles_w, filters = pooled.shape[1:]
    cells = m.astype(np.float64).reshape(4, 4, count, tiles_h, tiles_w, filters)
    y = np.einsum("ai,ijnyxf,bj->nyaxbf", _AT, cells, _AT).reshape(count, 2 * tiles_h, 2 * tiles_w, filters)
    z = np.full((count, 2 * tiles_h, out_w, filters), -np.inf)
    z[:, :, :2 * tiles_w] = y + bias
    max_pool2d_forward(z, 2, 2, 2, 2, 0, 0, pooled[first:first + count], argmax[first:first + count])


def winograd_output_grad(dpooled, argmax, first, count, out_w, tiles_h, tiles_w, dm):
    filters = dm.shape[2]
    dz = np.zeros((count, 2 * tiles_h * out_w * filters))
    max_pool_backward(dpooled[first:first + count], argmax[first:first + count], dz)
    windows = dz.reshape(count, tiles_h, 2, out_w, filters)[:, :, :, :2 * tiles_w]
    windows = windows.reshape(count, tiles_h, 2, tiles_w, 2, filters)
    dm[...] = np.einsum("ai,nyaxbf,bj->ijnyxf", _AT, windows, _AT).reshape(dm.shape)


def winograd_input_grad(dv, first, count, geometry, tiles_h, tiles_w, dx):
    pad_top, pad_left = geometry[6], geometry[7]
    height, width, channels = dx.shape[1:]
    cells = dv.astype(np.float64).reshape(4, 4, count, tiles_h, tiles_w, channels)
    tiles = np.einsum("ai,abnyxc,bj->nyxijc", _BT, cells, _BT)
    padded = np.zeros((count, 2 * tiles_h + 2 + height, 2 * tiles_w + 2 + width, channels))
    for ty in range(tiles_h):
        for tx in range(tiles_w):
            padded[:, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] += tiles[:, ty, tx]
    dx[first:first + count] = padded[:, pad_top:pad_top + height, pad_left:pad_left + width]


def conv3x3_pool_forward(x, kernel, bias, first, count, geometry, pooled, argmax):
    z = np.zeros((geometry[8] * geometry[9], kernel.shape[1]))
    conv_direct_pool_forward(x, kernel, bias, first, count, geometry, (2, 2, 2, 2, 0, 0), z, pooled, argmax)


def conv3x3_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dkernel):
    dz, one = np.zeros((geometry[8] * geometry[9], dkernel.shape[1])), np.zeros(dkernel.shape)
    conv_direct_pool_weight_grad(x, dpooled, argmax, first, count, geometry, dz, one, dkernel)
