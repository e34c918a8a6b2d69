"""The pooling kernels against their NumPy oracles (nnctl/engine/reference_pooling.py): shapes, strides ≠ pool,
'same'/'valid', odd sizes, ties, NaN, float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnctl.engine import reference_pooling as reference
from nnctl.engine.cpu import pooling
from nnctl.nn.layers.pooling import pooled_size

# (n, h, w, c), pool (ph, pw), strides (sh, sw), padding
GEOMETRIES = [
    ((2, 4, 4, 3), (2, 2), (2, 2), "valid"),
    ((2, 5, 7, 3), (2, 2), (2, 2), "valid"),    # odd sizes: the last row/column is dropped
    ((2, 5, 7, 3), (2, 2), (2, 2), "same"),     # ... or padded after
    ((3, 6, 5, 2), (3, 3), (1, 1), "valid"),    # overlapping windows
    ((3, 6, 5, 2), (3, 3), (1, 1), "same"),
    ((2, 7, 6, 4), (3, 2), (2, 3), "same"),     # strides ≠ pool, per axis
    ((2, 7, 8, 1), (2, 3), (3, 1), "valid"),
    ((2, 5, 5, 5), (4, 4), (3, 3), "same"),     # padding before and after
    ((2, 3, 3, 2), (1, 1), (2, 2), "valid"),    # strides > pool: cells skipped
    ((1, 2, 2, 3), (5, 5), (1, 1), "same"),     # a window wider than the image
    ((3, 1, 11, 4), (1, 5), (1, 5), "valid"),   # a 1-D layer's (n, 1, t, c) view
    ((3, 1, 11, 4), (1, 3), (1, 2), "same"),
    ((4, 3, 5, 6), (3, 5), (3, 5), "valid"),    # global pooling: one window over the image
]
IDS = [f"{s}-p{p}-s{k}-{pad}" for s, p, k, pad in GEOMETRIES]


def _setup(shape, pool, strides, padding, rng, dtype=np.float32, ties=False):
    (oh, pt), (ow, pl) = (pooled_size(s, p, k, padding) for s, p, k in zip(shape[1:3], pool, strides))
    x = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    window = (*pool, *strides, pt, pl)
    out = (shape[0], oh, ow, shape[3])
    return x.astype(dtype), window, out


@pytest.mark.parametrize("shape, pool, strides, padding", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pool_matches_oracle(shape, pool, strides, padding, ties):
    rng = np.random.default_rng(0)
    x, window, out = _setup(shape, pool, strides, padding, rng, ties=ties)
    y, argmax = np.full(out, np.nan, np.float32), np.full(out, -1, np.int32)
    pooling.max_pool2d_forward(x, *window, y, argmax)
    y_ref, argmax_ref = np.empty(out, np.float32), np.empty(out, np.int32)
    reference.max_pool2d_forward(x, *window, y_ref, argmax_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)  # ties: the first maximum in row-major window order

    n = shape[0]
    dy = rng.standard_normal(out).astype(np.float32).reshape(n, -1)
    dx, dx_ref = np.full((n, x[0].size), np.nan, np.float32), np.empty((n, x[0].size), np.float32)
    pooling.max_pool_backward(dy, argmax.reshape(n, -1), dx)
    reference.max_pool_backward(dy, argmax_ref.reshape(n, -1), dx_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert np.isclose(dx.sum(), dy.sum(), rtol=1e-5)  # every output gradient lands somewhere, once


@pytest.mark.parametrize("shape, pool, strides, padding", GEOMETRIES, ids=IDS)
def test_average_pool_matches_oracle(shape, pool, strides, padding):
    rng = np.random.default_rng(1)
    x, window, out = _setup(shape, pool, strides, padding, rng)
    y, y_ref = np.full(out, np.nan, np.float32), np.empty(out, np.float32)
    pooling.average_pool2d_forward(x, *window, y)
    reference.average_pool2d_forward(x, *window, y_ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)

    dy = rng.standard_normal(out).astype(np.float32)
    dx, dx_ref = np.full(shape, np.nan, np.float32), np.empty(shape, np.float32)
    pooling.average_pool2d_backward(dy, *window, dx)
    reference.average_pool2d_backward(dy, *window, dx_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


def test_same_average_pooling_divides_by_real_cells_only():
    x = np.ones((1, 3, 3, 1), np.float32)  # pool 2, stride 2, 'same': the last row/column windows are cut
    y = np.empty((1, 2, 2, 1), np.float32)
    pooling.average_pool2d_forward(x, 2, 2, 2, 2, 0, 0, y)
    np.testing.assert_array_equal(y, 1.0)  # as TF: not 4/9 or 1/4 for padded zeros
    dx = np.empty_like(x)
    pooling.average_pool2d_backward(np.ones_like(y), 2, 2, 2, 2, 0, 0, dx)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]])


def test_max_pool_ignores_padding_and_propagates_nan():
    x = -np.ones((1, 1, 3, 2), np.float32)  # all negative: a padded zero must never win
    x[0, 0, 1, 1] = np.nan
    y, argmax = np.empty((1, 1, 2, 2), np.float32), np.empty((1, 1, 2, 2), np.int32)
    pooling.max_pool2d_forward(x, 1, 2, 1, 2, 0, 0, y, argmax)
    assert y[0, 0, 1, 0] == -1.0 and argmax[0, 0, 1, 0] == 4  # window over column 2 and the padded column 3
    assert np.isnan(y[0, 0, 0, 1]) and argmax[0, 0, 0, 1] == 3


@pytest.mark.parametrize("strides", [2, 1], ids=["2x2 path", "general path"])
@pytest.mark.parametrize("cells", [[0], [1], [2], [3], [0, 3], [1, 2]])
def test_a_nan_anywhere_in_the_window_wins_and_stays(cells, strides):
    """The first NaN wins (NumPy's argmax), wherever it sits: a NaN in the window's first cell was once replaced
    by the next larger value, with argmax still pointing at the NaN."""
    x = np.array([[0.5, 1.0], [2.0, -1.0]], np.float32).reshape(1, 2, 2, 1).repeat(3, axis=3)
    x[0].reshape(4, 3)[cells, 1] = np.nan
    y, argmax = np.empty((1, 1, 1, 3), np.float32), np.empty((1, 1, 1, 3), np.int32)
    pooling.max_pool2d_forward(x, 2, 2, strides, strides, 0, 0, y, argmax)
    y_ref, argmax_ref = np.empty_like(y), np.empty_like(argmax)
    reference.max_pool2d_forward(x, 2, 2, strides, strides, 0, 0, y_ref, argmax_ref)
    assert np.isnan(y[0, 0, 0, 1]) and argmax[0, 0, 0, 1] == cells[0] * 3 + 1
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


def test_kernels_take_float64():
    rng = np.random.default_rng(3)
    x, window, out = _setup((2, 5, 5, 3), (2, 2), (2, 2), "same", rng, dtype=np.float64)
    y, argmax, y_ref, argmax_ref = np.empty(out), np.empty(out, np.int32), np.empty(out), np.empty(out, np.int32)
    pooling.max_pool2d_forward(x, *window, y, argmax)
    reference.max_pool2d_forward(x, *window, y_ref, argmax_ref)
    np.testing.assert_array_equal(y, y_ref)
    pooling.average_pool2d_forward(x, *window, y)
    reference.average_pool2d_forward(x, *window, y_ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 5), ph=st.integers(1, 4), pw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       seed=st.integers(0, 2**16))
def test_random_geometries_match_oracle(h, w, c, ph, pw, sh, sw, padding, seed):
    if padding == "valid" and (h < ph or w < pw):
        return  # no output: the layer refuses this shape
    rng = np.random.default_rng(seed)
    x, window, out = _setup((2, h, w, c), (ph, pw), (sh, sw), padding, rng, ties=seed % 2 == 0)
    y, argmax, y_ref, argmax_ref = (np.empty(out, np.float32), np.empty(out, np.int32),
                                    np.empty(out, np.float32), np.empty(out, np.int32))
    pooling.max_pool2d_forward(x, *window, y, argmax)
    reference.max_pool2d_forward(x, *window, y_ref, argmax_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    np.testing.assert_array_equal(y, y_ref)
    pooling.average_pool2d_forward(x, *window, y)
    reference.average_pool2d_forward(x, *window, y_ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    dy = rng.standard_normal(out).astype(np.float32)
    dx, dx_ref = np.empty(x.shape, np.float32), np.empty(x.shape, np.float32)
    pooling.average_pool2d_backward(dy, *window, dx)
    reference.average_pool2d_backward(dy, *window, dx_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    pooling.max_pool_backward(dy.reshape(2, -1), argmax.reshape(2, -1), dx.reshape(2, -1))
    reference.max_pool_backward(dy.reshape(2, -1), argmax.reshape(2, -1), dx_ref.reshape(2, -1))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)

