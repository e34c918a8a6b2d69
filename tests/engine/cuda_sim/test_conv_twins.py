"""The CUDA conv kernels under Numba's CUDA simulator, against the NumPy oracles on the CPU tests' shapes
(1-channel direct, im2col, strides, dilation, same/valid/causal, a kernel as large as the image)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import cuda, reference_conv
from tests.engine.test_conv_kernels import SHAPES, _geometry


@pytest.mark.parametrize("shape", SHAPES)
def test_im2col_col2im_and_direct_kernels(shape):
    rng = np.random.default_rng(0)
    in_shape, kernel, filters = shape[0], shape[1], 3
    geometry = _geometry(*shape)
    x = rng.standard_normal((4,) + in_shape).astype(np.float32)
    depth, rows = kernel[0] * kernel[1] * in_shape[2], 2 * geometry[8] * geometry[9]
    cols, want = np.full((rows, depth), 7, np.float32), np.zeros((rows, depth), np.float32)
    cuda.im2col(x, 1, 2, geometry, cols)
    reference_conv.im2col(x, 1, 2, geometry, want)
    np.testing.assert_array_equal(cols, want)
    dcols = rng.standard_normal((rows, depth)).astype(np.float32)
    dx, want_dx = np.full_like(x, 5), np.full_like(x, 5)
    cuda.col2im(dcols, 1, 2, geometry, dx)
    reference_conv.col2im(dcols, 1, 2, geometry, want_dx)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
    assert (dx[0] == 5).all() and (dx[3] == 5).all(), "col2im wrote outside its images"
    w = rng.standard_normal((depth, filters)).astype(np.float32)
    z, want_z = np.zeros((rows, filters), np.float32), np.zeros((rows, filters))
    cuda.conv_direct_forward(x, w, 1, 2, geometry, z)
    reference_conv.conv_direct_forward(x, w, 1, 2, geometry, want_z)
    np.testing.assert_allclose(z, want_z, rtol=1e-5, atol=1e-5)
    dz = rng.standard_normal((rows, filters)).astype(np.float32)
    dw, want_dw = np.full((depth, filters), 9, np.float32), np.zeros((depth, filters))
    cuda.conv_direct_weight_grad(x, dz, 1, 2, geometry, dw)
    reference_conv.conv_direct_weight_grad(x, dz, 1, 2, geometry, want_dw)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[2] == (1, 1)])
def test_tap_shift_kernels_and_partials(shape):
    rng = np.random.default_rng(5)
    (height, width, _), kernel, filters = shape[0], shape[1], 3
    geometry = _geometry(*shape)
    taps, outputs = kernel[0] * kernel[1], 3 * geometry[8] * geometry[9]
    y = rng.standard_normal((3 * height * width, taps * filters)).astype(np.float32)
    z, want = np.full((outputs, filters), 4, np.float32), np.zeros((outputs, filters), np.float32)
    cuda.conv_taps_sum(y, 3, height, width, geometry, z)
    reference_conv.conv_taps_sum(y, 3, height, width, geometry, want)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-5)
    dz = rng.standard_normal((outputs, filters)).astype(np.float32)
    spread, want = np.full_like(y, 4), np.zeros_like(y)
    cuda.conv_taps_spread(dz, 3, height, width, geometry, spread)
    reference_conv.conv_taps_spread(dz, 3, height, width, geometry, want)
    np.testing.assert_array_equal(spread, want)
    partials, out, expected = rng.standard_normal((4, 5, 3)).astype(np.float32), np.zeros((5, 3), np.float32), \
        np.zeros((5, 3), np.float32)
    cuda.sum_partials(partials, 3, out)
    reference_conv.sum_partials(partials, 3, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # A long sum (a recurrent bias over samples × steps) goes in chunks, then their sums: the same sums.
    partials, out, expected = rng.standard_normal((1100, 1, 3)).astype(np.float32), np.zeros((1, 3), np.float32), \
        np.zeros((1, 3), np.float32)
    cuda.sum_partials(partials, 1100, out)
    reference_conv.sum_partials(partials, 1100, expected)
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)
