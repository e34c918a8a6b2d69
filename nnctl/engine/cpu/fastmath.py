"""Vectorizing float32 activations for the recurrent loops, and the activation codes the kernels take.

Numba's math.exp/math.tanh call libm one value at a time; these are plain arithmetic that LLVM vectorizes.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from nnctl.engine.settings import KERNEL

LINEAR, RELU, SIGMOID, TANH, HARD_SIGMOID = range(5)
RECURRENT_ACTIVATIONS = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH,
                         "hard_sigmoid": HARD_SIGMOID}


# float32 transcendentals that vectorize. Numba's math.exp/math.tanh call libm one value at a time (~17 ns a
# tanh here, no SVML in llvmlite's wheels); these are exp(x) = 2^k · p(r), r = x − k·ln 2 (Cephes expf's
# polynomial), and Cephes tanhf's odd polynomial near 0, where tanh = 1 − 2/(e^{2|x|} + 1) would cancel.
# Max relative error against float64 on [−30, 30]: see tests/engine/test_recurrent_kernels.py.
_F = np.float32
_ZERO, _HALF, _ONE, _TWO, _THREE, _SIX = _F(0), _F(0.5), _F(1), _F(2), _F(3), _F(6)
# exp's argument range: 2^k stays a normal float for k in [−125, 127] (x in [−87, 88]), so nothing overflows.
_EXP_LO, _EXP_HI = _F(-87.0), _F(88.0)
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_EXP_P = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
          _F(1.6666665459e-1), _F(5.0000001201e-1))
_TANH_P = (_F(-5.70498872745e-3), _F(2.06390887954e-2), _F(-5.37397155531e-2), _F(1.33314422036e-1),
           _F(-3.33332819422e-1))
_TANH_SMALL = _F(0.625)
# Without `reassoc`: it would let LLVM fold r = (x − k·ln2_hi) − k·ln2_lo into x − k·(ln2_hi + ln2_lo), which
# loses the bits the two-part ln 2 is there to keep.
EXACT = {**KERNEL, "fastmath": {"contract", "nsz"}}


@intrinsic
def _pow2(typingctx, k):
    """2^k as a float32, for a float32 k holding an integer in [−126, 127]: the exponent bits, no libm."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(k), codegen


@njit(**EXACT)
def exp32(x):
    """e^x for float32 x (clamped to [−87, 88])."""
    p0, p1, p2, p3, p4, p5 = _EXP_P
    x = min(max(x, _EXP_LO), _EXP_HI)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
    return (p * (r * r) + r + _ONE) * _pow2(k)


@njit(**EXACT)
def sigmoid32(x):
    return _ONE / (_ONE + exp32(-x))


@njit(**EXACT)
def tanh32(x):
    t0, t1, t2, t3, t4 = _TANH_P
    z = x * x
    small = ((((t0 * z + t1) * z + t2) * z + t3) * z + t4) * z * x + x
    large = _ONE - _TWO / (exp32(abs(x) + abs(x)) + _ONE)
    large = large if x >= _ZERO else -large
    return small if abs(x) < _TANH_SMALL else large


def _sigmoid(x):
    """Compiled code only: sigmoid32 for float32, exact math for float64 (the gradient checks)."""


def _tanh(x):
    """Compiled code only: tanh32 for float32, math.tanh for float64."""


@overload(_sigmoid)
def _sigmoid_by_type(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)
    return lambda x: 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@overload(_tanh)
def _tanh_by_type(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: math.tanh(x)


# The element-wise loops take whole 1-D views and index them from 0: with an index that may be negative
# (range(lo, hi)), Numba's wraparound check kept LLVM from vectorizing them (5 ns a tanh instead of ~1).

@njit(inline="always", **KERNEL)
def _activate(code, x):
    """x = act(x) in place; one loop per activation, so each vectorizes."""
    if code == TANH:
        for j in range(x.shape[0]):
            x[j] = _tanh(x[j])
    elif code == SIGMOID:
        for j in range(x.shape[0]):
            x[j] = _sigmoid(x[j])
    elif code == RELU:
        for j in range(x.shape[0]):
            x[j] = x[j] if x[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:  # Keras 3: relu6(x + 3) / 6
        for j in range(x.shape[0]):
            x[j] = min(max(x[j] + _THREE, _ZERO), _SIX) / _SIX


@njit(inline="always", **KERNEL)
def _times_derivative(code, y, d):
    """d *= act'(·), from the activated values y (same length)."""
    if code == TANH:
        for j in range(d.shape[0]):
            d[j] *= _ONE - y[j] * y[j]
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] *= y[j] * (_ONE - y[j])
    elif code == RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:
        for j in range(d.shape[0]):
            d[j] = d[j] / _SIX if _ZERO < y[j] < _ONE else _ZERO


@njit(inline="always", **KERNEL)
def _scale_by_derivative(code, d, s):
    """d = s ⊙ act'(d) in place, d holding activated values on entry (the backward turns a gate row into its
    gradient row without a second array)."""
    if code == LINEAR:
        for j in range(d.shape[0]):
            d[j] = s[j]
    elif code == TANH:
        for j in range(d.shape[0]):
            d[j] = s[j] * (_ONE - d[j] * d[j])
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] = s[j] * (d[j] * (_ONE - d[j]))
    elif code == RELU:
        for j in range(d.shape[0]):
            d[j] = s[j] if d[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:
        for j in range(d.shape[0]):
            d[j] = s[j] / _SIX if _ZERO < d[j] < _ONE else _ZERO
