"""More of Keras 3's `keras.ops` for custom layers and losses, built on nnctl/ops/core.py: most are compositions
of core ops (so their vector-Jacobian products are the core ones'), a few have their own, and some
(`sign`, `argmax`, comparisons' kin) are not differentiated, as in Keras."""

from __future__ import annotations

import numpy as np

from nnctl.ops.core import (Tensor, _asarray, _tensor, _unary, _value, exp, log, matmul, maximum, multiply, negative,
                            relu, sqrt, square, subtract, where)
from nnctl.ops.reductions import _reduction, mean
from nnctl.ops.reductions import max as _max
from nnctl.ops.reductions import sum as _sum


def dot(a, b):
    """`matmul` (keras.ops.dot on vectors and matrices)."""
    return matmul(a, b)


def min(x, axis=None, keepdims=False):  # noqa: A001 (keras.ops.min)
    return negative(_max(negative(x), axis=axis, keepdims=keepdims))


def var(x, axis=None, keepdims=False):
    centred = subtract(x, mean(x, axis=axis, keepdims=True))
    return mean(square(centred), axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return sqrt(var(x, axis=axis, keepdims=keepdims))


def prod(x, axis=None, keepdims=False):
    return _reduction(x, axis, keepdims, np.prod, lambda g, x, full, axis: g * full / x)


def log1p(x):
    return _unary(x, np.log1p, lambda g, x, y: g / (1.0 + x))


def expm1(x):
    return _unary(x, np.expm1, lambda g, x, y: g * (y + 1.0))


def softplus(x):
    """log(1 + exp(x)), computed without overflow."""
    return _unary(x, lambda v: np.logaddexp(0.0, v), lambda g, x, y: g / (1.0 + np.exp(-x)))


def leaky_relu(x, negative_slope=0.2):
    return maximum(x, multiply(x, negative_slope)) if 0 <= negative_slope <= 1 else where(
        _value(x) > 0, x, multiply(x, negative_slope))


def elu(x, alpha=1.0):
    x = _tensor(x)
    return where(x.value > 0, relu(x), multiply(subtract(exp(_min0(x)), 1.0), alpha))


def _min0(x):
    return where(_value(x) < 0, x, 0.0)


def log_softmax(x, axis=-1):
    x = _tensor(x)
    shifted = subtract(x, Tensor(np.max(x.value, axis=axis, keepdims=True)))
    return subtract(shifted, log(_sum_exp(shifted, axis)))


def _sum_exp(x, axis):
    return _sum(exp(x), axis=axis, keepdims=True)


def norm(x, axis=None, keepdims=False):
    """The Euclidean norm (keras.ops.norm's default for vectors)."""
    return sqrt(_sum(square(x), axis=axis, keepdims=keepdims))


# ---- not differentiated (as in Keras): values only ----------------------------------------------------------
def sign(x):
    return Tensor(np.sign(_value(x)))


def argmax(x, axis=-1):
    return Tensor(np.argmax(_value(x), axis=axis))


def argmin(x, axis=-1):
    return Tensor(np.argmin(_value(x), axis=axis))


def ones_like(x, dtype=None):
    return Tensor(np.ones_like(_value(x), dtype=dtype))


def zeros_like(x, dtype=None):
    return Tensor(np.zeros_like(_value(x), dtype=dtype))


def shape(x) -> tuple:
    return tuple(np.shape(_value(x)))


def convert_to_tensor(x, dtype=None):
    return Tensor(_asarray(_value(x), dtype))


__all__ = ["argmax", "argmin", "convert_to_tensor", "dot", "elu", "expm1", "leaky_relu", "log1p", "log_softmax",
           "min", "norm", "ones_like", "prod", "shape", "sign", "softplus", "std", "var", "zeros_like"]
