"""Dropout's masks on the GPU from a counter-based generator: element i of the draw numbered `counter` under
`key` is SplitMix64's finalizer of key ⊕ counter·M + (i + 1)·φ, its top 24 bits a uniform in [0, 1). Nothing
is stored between draws, every element is independent of the launch geometry, and a run that resumes at step
`counter` draws what it would have drawn had it never stopped. The NumPy oracle is
`nnctl.engine.reference.counter_uniform`; the CPU draws its masks from the run's generator instead, so a GPU run
with dropout is reproducible on a GPU, not equal to the CPU's.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, grid1, on

_GOLDEN, _M1, _M2, _M3 = (np.uint64(v) for v in (0x9E3779B97F4A7C15, 0xD1342543DE82EF95, 0xBF58476D1CE4E5B9,
                                                  0x94D049BB133111EB))
_S27, _S30, _S31, _S40, _ONE = (np.uint64(v) for v in (27, 30, 31, 40, 1))


def draw_state(key: int, counter: int) -> np.uint64:
    """The 64-bit state of draw `counter` under `key` (host side; both taken modulo 2⁶⁴)."""
    return np.uint64((key ^ (counter * int(_M1))) % (1 << 64))


@cuda.jit(device=True)
def state_at(key, counter):
    """draw_state on the device: `key` a uint64, `counter` an integer."""
    return key ^ (np.uint64(counter) * _M1)


@cuda.jit(device=True)
def multiplier(state, i, rate, scale):
    """Element i's multiplier in the draw whose state is `state`: `scale` (float32 1/(1 − rate)) where its uniform
    is at least `rate` (float32), else 0."""
    z = state + (np.uint64(i) + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M2
    z = (z ^ (z >> _S27)) * _M3
    z = z ^ (z >> _S31)
    uniform = np.float32(z >> _S40) * np.float32(1.0 / 16777216.0)
    return scale if uniform >= rate else np.float32(0.0)


@cuda.jit(device=True)
def _drop(x, state, rate, scale, y, mask, i):
    """Element i of the draw whose state is `state` (the kernels' cell)."""
    mask[i] = multiplier(state, i, rate, scale)
    y[i] = x[i] * mask[i]


@cuda.jit(**KERNEL)
def _dropout_counter(x, state, rate, scale, y, mask):
    i = cuda.grid(1)
    if i < x.shape[0]:
        _drop(x, state, rate, scale, y, mask, i)


@cuda.jit(**KERNEL)
def _dropout_counter_at(x, key, steps, offset, rate, scale, y, mask):
    i = cuda.grid(1)
    if i < x.shape[0]:
        _drop(x, state_at(key, steps[0] + offset), rate, scale, y, mask, i)


def dropout_counter_forward(x, key, counter, rate, y, mask):
    """Inverted dropout with the counter-based uniforms: mask = (u ≥ rate) / (1 − rate); y = x · mask. x, y,
    mask: 1-D, same size."""
    _dropout_counter[on(*grid1(x.shape[0]))](x, draw_state(key, counter), np.float32(rate),
                                             np.float32(1.0 / (1.0 - rate)), y, mask)


def dropout_counter_forward_at(x, key, steps, offset, rate, y, mask):
    """dropout_counter_forward for the draw numbered steps[0] + offset, read on the device (`steps`: an int64
    device array of one; the same launch serves every step of a recorded CUDA graph, graphs.py)."""
    _dropout_counter_at[on(*grid1(x.shape[0]))](x, np.uint64(key % (1 << 64)), steps, np.int64(offset),
                                                np.float32(rate), np.float32(1.0 / (1.0 - rate)), y, mask)


KERNELS = ("dropout_counter_forward", "dropout_counter_forward_at")
