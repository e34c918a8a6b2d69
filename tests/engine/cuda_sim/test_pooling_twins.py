"""The CUDA pooling kernels under Numba's CUDA simulator, against the NumPy oracles on the CPU tests'
geometries (odd sizes, same/valid, strides ≠ pool, ties, windows wider than the image; a NaN winning)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import cuda
from nnctl.engine import reference_pooling as reference
from tests.engine.test_pooling_kernels import GEOMETRIES, IDS, _setup


@pytest.mark.parametrize("shape, pool, strides, padding", GEOMETRIES, ids=IDS)
def test_max_and_average_pooling_match_the_oracles(shape, pool, strides, padding):
    rng = np.random.default_rng(0)
    x, window, out = _setup(shape, pool, strides, padding, rng, ties=True)
    y, argmax = np.full(out, np.nan, np.float32), np.full(out, -1, np.int32)
    cuda.max_pool2d_forward(x, *window, y, argmax)
    y_ref, argmax_ref = np.empty(out, np.float32), np.empty(out, np.int32)
    reference.max_pool2d_forward(x, *window, y_ref, argmax_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)  # ties: the first maximum in row-major window order
    n = shape[0]
    dy = rng.standard_normal(out).astype(np.float32)
    dx, dx_ref = np.full((n, x[0].size), np.nan, np.float32), np.empty((n, x[0].size), np.float32)
    cuda.max_pool_backward(dy.reshape(n, -1), argmax.reshape(n, -1), dx)
    reference.max_pool_backward(dy.reshape(n, -1), argmax_ref.reshape(n, -1), dx_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    mean, mean_ref = np.full(out, np.nan, np.float32), np.empty(out, np.float32)
    cuda.average_pool2d_forward(x, *window, mean)
    reference.average_pool2d_forward(x, *window, mean_ref)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-6, atol=1e-6)
    back, back_ref = np.full(x.shape, np.nan, np.float32), np.empty(x.shape, np.float32)
    cuda.average_pool2d_backward(dy, *window, back)
    reference.average_pool2d_backward(dy, *window, back_ref)
    np.testing.assert_allclose(back, back_ref, rtol=1e-5, atol=1e-6)


def test_a_nan_wins_and_stays():
    x = np.array([[[[1.0], [np.nan]], [[5.0], [2.0]]]], np.float32)  # (1, 2, 2, 1)
    y, argmax = np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int32)
    cuda.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0, y, argmax)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 1


# The geometries whose windows never overlap (strides ≥ pool sizes): where the PoolOp runs the disjoint kernel.
DISJOINT = [(g, i) for g, i in zip(GEOMETRIES, IDS) if all(s >= p for s, p in zip(g[2], g[1])) or g[1] == g[0][1:3]]


@pytest.mark.parametrize("shape, pool, strides, padding", [g for g, _ in DISJOINT], ids=[i for _, i in DISJOINT])
def test_the_disjoint_max_backward_gives_the_general_ones_bytes(shape, pool, strides, padding):
    """Every output a thread (the PoolOp's choice when windows never overlap) against the one-thread-a-sample
    kernel: the same bytes, a −0 gradient turned 0 as by the CPU's sum, uncovered cells 0."""
    rng = np.random.default_rng(3)
    x, window, out = _setup(shape, pool, strides, padding, rng, ties=True)
    y, argmax = np.empty(out, np.float32), np.empty(out, np.int32)
    cuda.max_pool2d_forward(x, *window, y, argmax)
    n = shape[0]
    dy = rng.standard_normal(out).astype(np.float32).reshape(n, -1)
    dy[0, 0] = -0.0
    fast, general = np.full((n, x[0].size), np.nan, np.float32), np.full((n, x[0].size), 7, np.float32)
    cuda.max_pool_backward_disjoint(dy, argmax.reshape(n, -1), fast)
    cuda.max_pool_backward(dy, argmax.reshape(n, -1), general)
    assert fast.tobytes() == general.tobytes()


@pytest.mark.parametrize("shape, pool, strides, padding", GEOMETRIES, ids=IDS)
def test_the_gathering_max_backward_gives_the_scatters_bytes(shape, pool, strides, padding):
    """A thread an input cell adding the gradients of the windows it won in output order (the PoolOp's choice
    where windows overlap) against the one-thread-a-sample scatter, on every geometry (ties, so that cells win
    several overlapping windows; a −0 gradient; padding; cells no window holds): the same bytes."""
    rng = np.random.default_rng(4)
    x, window, out = _setup(shape, pool, strides, padding, rng, ties=True)
    y, argmax = np.empty(out, np.float32), np.empty(out, np.int32)
    cuda.max_pool2d_forward(x, *window, y, argmax)
    n = shape[0]
    dy = rng.standard_normal(out).astype(np.float32)
    dy.flat[0] = -0.0
    gathered, scattered = np.full(x.shape, np.nan, np.float32), np.full((n, x[0].size), 7, np.float32)
    cuda.max_pool2d_backward_gather(dy, argmax, *window, gathered)
    cuda.max_pool_backward(dy.reshape(n, -1), argmax.reshape(n, -1), scattered)
    assert gathered.tobytes() == scattered.tobytes()
    if not any(s >= p for s, p in zip(strides, pool)):  # (overlapping: some cell won twice, or the test is weak)
        assert np.bincount(argmax.reshape(n, -1)[0]).max() > 1
