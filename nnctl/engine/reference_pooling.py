"""Plain-NumPy oracles for the pooling kernels (nnctl/engine/cpu/pooling.py): same names and arguments.

Written for clarity, not speed; only the tests import this module.
"""

import numpy as np


def _window(o, stride, pad, pool, size):
    start = o * stride - pad
    return max(start, 0), min(start + pool, size)


def max_pool2d_forward(x, ph, pw, sh, sw, pt, pl, y, argmax):
    n, h, w, c = x.shape
    flat = np.arange(h * w * c).reshape(h, w, c)
    for i in range(y.shape[1]):
        h0, h1 = _window(i, sh, pt, ph, h)
        for j in range(y.shape[2]):
            w0, w1 = _window(j, sw, pl, pw, w)
            window = x[:, h0:h1, w0:w1, :].reshape(n, -1, c)
            where = window.argmax(axis=1)  # NumPy's argmax keeps the first maximum, as the kernel does
            y[:, i, j, :] = np.take_along_axis(window, where[:, None, :], axis=1)[:, 0, :]
            argmax[:, i, j, :] = flat[h0:h1, w0:w1, :].reshape(-1, c)[where, np.arange(c)]



def max_pool_backward(dy, argmax, dx):
    dx[...] = 0
    for b in range(dy.shape[0]):
        np.add.at(dx[b], argmax[b], dy[b])



def _counts(shape, ph, pw, sh, sw, pt, pl, out_h, out_w):
    """The real-cell window of every output position, and how many cells it holds."""
    for i in range(out_h):
        h0, h1 = _window(i, sh, pt, ph, shape[1])
        for j in range(out_w):
            w0, w1 = _window(j, sw, pl, pw, shape[2])
            yield i, j, (slice(h0, h1), slice(w0, w1)), (h1 - h0) * (w1 - w0)


def average_pool2d_forward(x, ph, pw, sh, sw, pt, pl, y):
    for i, j, (rows, cols), count in _counts(x.shape, ph, pw, sh, sw, pt, pl, y.shape[1], y.shape[2]):
        y[:, i, j, :] = x[:, rows, cols, :].astype(np.float64).sum(axis=(1, 2)) / count



def average_pool2d_backward(dy, ph, pw, sh, sw, pt, pl, dx):
    total = np.zeros(dx.shape)
    for i, j, (rows, cols), count in _counts(dx.shape, ph, pw, sh, sw, pt, pl, dy.shape[1], dy.shape[2]):
        total[:, rows, cols, :] += dy[:, i, j, None, None, :] / count
    dx[...] = total

