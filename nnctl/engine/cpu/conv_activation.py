"""GIL-free twins of Dense's fused bias + activation kernels, for the conv chunk loop's threads.

Dense's kernels hold the GIL while they run (a Numba kernel called from Python does unless `nogil`), so two
chunk threads running their bias + activation serialized on it: 40 % of MNIST's first conv layer. Each twin
here is a `nogil` kernel that calls Dense's (Numba inlines or links it: same code, same bytes).
"""

from numba import njit

from nnctl.engine.cpu.dense import (  # noqa: F401 (called from the twins below)
    bias_linear_forward, bias_linear_backward, bias_relu_forward, bias_relu_backward, bias_sigmoid_forward,
    bias_sigmoid_backward, bias_tanh_forward, bias_tanh_backward, bias_softmax_forward, bias_softmax_backward,
    bias_elu_forward, bias_elu_backward, bias_leaky_relu_forward, bias_leaky_relu_backward,
    bias_softplus_forward, bias_softplus_backward, bias_gelu_forward, bias_gelu_backward,
)
from nnctl.engine.settings import KERNEL

_NOGIL = {**KERNEL, "nogil": True}


@njit(**_NOGIL)
def _linear_forward(z, bias, alpha, y):
    bias_linear_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _linear_backward(dy, z, y, alpha, dz, db):
    bias_linear_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _relu_forward(z, bias, alpha, y):
    bias_relu_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _relu_backward(dy, z, y, alpha, dz, db):
    bias_relu_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _sigmoid_forward(z, bias, alpha, y):
    bias_sigmoid_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _sigmoid_backward(dy, z, y, alpha, dz, db):
    bias_sigmoid_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _tanh_forward(z, bias, alpha, y):
    bias_tanh_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _tanh_backward(dy, z, y, alpha, dz, db):
    bias_tanh_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _softmax_forward(z, bias, alpha, y):
    bias_softmax_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _softmax_backward(dy, z, y, alpha, dz, db):
    bias_softmax_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _elu_forward(z, bias, alpha, y):
    bias_elu_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _elu_backward(dy, z, y, alpha, dz, db):
    bias_elu_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _leaky_relu_forward(z, bias, alpha, y):
    bias_leaky_relu_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _leaky_relu_backward(dy, z, y, alpha, dz, db):
    bias_leaky_relu_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _softplus_forward(z, bias, alpha, y):
    bias_softplus_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _softplus_backward(dy, z, y, alpha, dz, db):
    bias_softplus_backward(dy, z, y, alpha, dz, db)


@njit(**_NOGIL)
def _gelu_forward(z, bias, alpha, y):
    bias_gelu_forward(z, bias, alpha, y)


@njit(**_NOGIL)
def _gelu_backward(dy, z, y, alpha, dz, db):
    bias_gelu_backward(dy, z, y, alpha, dz, db)


# Indexed by ACTIVATION_CODES, as dense.BIAS_ACT_FORWARD / BIAS_ACT_BACKWARD.
FORWARD = (
    _linear_forward, _relu_forward, _sigmoid_forward, _tanh_forward, _softmax_forward, _elu_forward,
    _leaky_relu_forward, _softplus_forward, _gelu_forward,
)
BACKWARD = (
    _linear_backward, _relu_backward, _sigmoid_backward, _tanh_backward, _softmax_backward, _elu_backward,
    _leaky_relu_backward, _softplus_backward, _gelu_backward,
)


def conv_bias_act_forward(z, bias, act, alpha, y):
    """dense.bias_act_forward without the GIL: z += bias; y = act(z). z, y: (rows, filters)."""
    FORWARD[act](z, bias, alpha, y)


def conv_bias_act_backward(dy, z, y, act, alpha, dz, db):
    """dense.bias_act_backward without the GIL: dz = dy · act'(z); db = column sums of dz (overwritten)."""
    BACKWARD[act](dy, z, y, alpha, dz, db)
