"""The reductions of `nnctl.ops` (`sum`, `mean`, `max`; more.py builds `min`, `var`, `std`, `prod` and `norm` on
`_reduction`), each with its vector-Jacobian product, on the tape of nnctl/ops/core.py."""

from __future__ import annotations

import numpy as np

from nnctl.ops.core import _copy, _op, _tensor


def _reduction(x, axis, keepdims, value, dx):
    x = _tensor(x)
    out = value(x.value, axis=axis, keepdims=keepdims)

    def vjp(g):
        if not keepdims and axis is not None:
            g = np.expand_dims(g, axis)
        full = value(x.value, axis=axis, keepdims=True)
        return (dx(np.broadcast_to(g, x.shape), x.value, full, axis),)
    return _op(out, (x,), vjp)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (keras.ops.sum)
    return _reduction(x, axis, keepdims, np.sum, lambda g, x, y, axis: _copy(g))


def mean(x, axis=None, keepdims=False):
    def dx(g, x, y, axis):
        return g / (x.size if axis is None else np.prod([x.shape[a] for a in np.atleast_1d(axis)]))
    return _reduction(x, axis, keepdims, np.mean, dx)


def max(x, axis=None, keepdims=False):  # noqa: A001 (keras.ops.max)
    """The gradient goes to every entry equal to the maximum, split evenly among ties."""
    def dx(g, x, y, axis):
        hits = (x == y).astype(x.dtype)
        return g * hits / hits.sum(axis=axis, keepdims=True)
    return _reduction(x, axis, keepdims, np.max, dx)


__all__ = ["max", "mean", "sum"]
