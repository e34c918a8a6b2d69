"""The CUDA conv + max pooling kernels (nnctl/engine/cuda/conv_pool.py, conv3x3.py) under Numba's CUDA simulator,
against the NumPy oracles the CPU tests use, on tiny float32 shapes: images 1 and 2 of 4 (writes confined to
them), ties (the first cell wins) and a NaN input (it wins its window, at the cell the pooling kernel picks)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import convolution, cuda, reference_conv, reference_conv3x3, reference_pooling
from nnctl.engine.convolution import ConvPlan, output_length
from tests.engine.test_conv3x3_kernels import BACKEND, _plain, _plan
from tests.engine.test_conv_kernels import SHAPES, _geometry

# (conv shape, pooling (size, strides, padding)): 2×2/2, overlapping 3×3/2 'same', a 1-D window of 2 at stride 1
POOLED = [(SHAPES[0], ((2, 2), (2, 2), "valid")), (SHAPES[1], ((3, 3), (2, 2), "same")),
          (SHAPES[4], ((1, 2), (1, 1), "valid"))]
# The CPU tests' Winograd cases, narrower: 'same' padding, an odd output cropped on both axes, a row of tiles
CASES = [((10, 8, 3), 5, "same", None), ((9, 11, 2), 4, "valid", (6, 8)), ((4, 12, 2), 3, "same", None)]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _pooling(geometry, window, filters, n=4):
    """(window tuple, pooled shape) of max pooling after a conv of `geometry`."""
    (ph, pw), (sh, sw), padding = window
    (pooled_h, pt), (pooled_w, pl) = (output_length(geometry[8], ph, sh, 1, padding),
                                      output_length(geometry[9], pw, sw, 1, padding))
    return (ph, pw, sh, sw, pt, pl), (n, pooled_h, pooled_w, filters)


def _direct_pool_forward(x, w, bias, geometry, window, shape):
    pooled, argmax = np.full(shape, 7, np.float32), np.full(shape, -1, np.int32)
    z = np.zeros((geometry[8] * geometry[9], w.shape[1]), np.float32)
    cuda.conv_direct_pool_forward(x, w, bias, 1, 2, geometry, window, z, pooled, argmax)
    want, want_arg = np.full(shape, 7, np.float32), np.full(shape, -1, np.int32)
    reference_conv.conv_direct_pool_forward(x, w, bias, 1, 2, geometry, window, z.astype(np.float64), want, want_arg)
    np.testing.assert_allclose(pooled, want, **TOL)
    np.testing.assert_array_equal(argmax, want_arg)
    assert (pooled[[0, 3]] == 7).all() and (argmax[[0, 3]] == -1).all(), "wrote outside images 1 and 2"
    return pooled, argmax


@pytest.mark.parametrize("shape, window", POOLED)
def test_direct_conv_pool_kernels_match_the_oracle(shape, window):
    rng = np.random.default_rng(1)
    in_shape, filters = shape[0], 3
    geometry = _geometry(*shape)
    window, pooled_shape = _pooling(geometry, window, filters)
    x = rng.standard_normal((4,) + in_shape).astype(np.float32)
    depth = shape[1][0] * shape[1][1] * in_shape[2]
    w, bias = rng.standard_normal((depth, filters)).astype(np.float32), rng.standard_normal(filters).astype(np.float32)
    pooled, argmax = _direct_pool_forward(x, w, bias, geometry, window, pooled_shape)

    dpooled = rng.standard_normal(pooled_shape).astype(np.float32).reshape(4, -1)
    flat_arg = argmax.reshape(4, -1)
    flat_arg[0], flat_arg[3] = flat_arg[1], flat_arg[2]  # images 0 and 3 are not read
    dz, one = np.zeros((geometry[8] * geometry[9], filters)), np.zeros((depth, filters))
    dw, want = np.full((depth, filters), 9, np.float32), np.zeros((depth, filters))
    cuda.conv_direct_pool_weight_grad(x, dpooled, flat_arg, 1, 2, geometry, dz.astype(np.float32),
                                      one.astype(np.float32), dw)
    reference_conv.conv_direct_pool_weight_grad(x, dpooled, flat_arg, 1, 2, geometry, dz, one, want)
    np.testing.assert_allclose(dw, want, **TOL)


def test_direct_conv_pool_ties_and_a_nan():
    """A constant image: every window a tie, its first cell wins; a NaN pixel: the outputs reading it are NaN,
    and the first of them in its window wins (3 channels, overlapping 3×3 windows)."""
    shape, window = POOLED[1]
    geometry = _geometry(*shape)
    window, pooled_shape = _pooling(geometry, window, 2)
    x = np.ones((4,) + shape[0], np.float32)
    x[2, 3, 2, 1] = np.nan
    w, bias = np.full((18, 2), 0.25, np.float32), np.zeros(2, np.float32)
    pooled, argmax = _direct_pool_forward(x, w, bias, geometry, window, pooled_shape)
    assert np.isnan(pooled[2]).any() and not np.isnan(pooled[1]).any()


@pytest.mark.parametrize("window, filters, depth", [((2, 2, 2, 2, 0, 0), 3, 12), ((3, 3, 2, 2, 0, 0), 3, 10)],
                         ids=["2x2", "overlapping 3x3"])
def test_pooled_gradient_kernels_match_the_oracle(window, filters, depth):
    """conv_pooled_weight_grad / _columns_grad from the pooled gradient (a third of it zero, as behind a ReLU) and
    the pooling's winners (an overlapping window can make a cell win twice), for images 1 and 2 of 4."""
    rng = np.random.default_rng(2)
    out_h, out_w = 5, 4
    ph, pw, sh, sw, pt, pl = window
    pooled_shape = (4, (out_h - ph) // sh + 1, (out_w - pw) // sw + 1, filters)
    z = rng.standard_normal((4, out_h, out_w, filters))
    pooled, argmax = np.empty(pooled_shape), np.empty(pooled_shape, np.int32)
    reference_pooling.max_pool2d_forward(z, *window, pooled, argmax)
    dpooled = (rng.standard_normal(pooled_shape) * (rng.random(pooled_shape) > 0.33)).astype(np.float32)
    dpooled, argmax = dpooled.reshape(4, -1), argmax.reshape(4, -1)
    positions = out_h * out_w
    cols = rng.standard_normal((2 * positions, depth)).astype(np.float32)
    dkernel, want = np.full((depth, filters), 9, np.float32), np.zeros((depth, filters))
    cuda.conv_pooled_weight_grad(cols, dpooled, argmax, 1, 2, positions, dkernel)
    reference_conv.conv_pooled_weight_grad(cols, dpooled, argmax, 1, 2, positions, want)
    np.testing.assert_allclose(dkernel, want, **TOL)
    kernel_t = rng.standard_normal((filters, depth)).astype(np.float32)
    dcols, want = np.full((2 * positions, depth), 9, np.float32), np.zeros((2 * positions, depth))
    cuda.conv_pooled_columns_grad(dpooled, argmax, kernel_t, 1, 2, positions, dcols)
    reference_conv.conv_pooled_columns_grad(dpooled, argmax, kernel_t, 1, 2, positions, want)
    np.testing.assert_allclose(dcols, want, **TOL)
    assert (dcols == 0).all(axis=1).any(), "every row had a winner: the rows without one are untested"


def _operands(case, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + case[0]).astype(np.float32)
    kernel = rng.standard_normal((3, 3, case[0][2], case[1])).astype(np.float32)
    return x, kernel, rng.standard_normal(case[1]).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_each_winograd_stage_matches_its_oracle(case):
    plan = _plan(*case)
    x, _, bias = _operands(case)
    rng = np.random.default_rng(7)
    channels, filters, (out_h, out_w) = case[0][2], case[1], plan.out_shape
    tiles_h, tiles_w = out_h // 2, out_w // 2
    tiles = 2 * tiles_h * tiles_w  # images 1 and 2 of 4
    v, want = np.full((16, tiles, channels), 7, np.float32), np.zeros((16, tiles, channels))
    cuda.winograd_input(x, 1, 2, plan.geometry, tiles_h, tiles_w, v)
    reference_conv3x3.winograd_input(x, 1, 2, plan.geometry, tiles_h, tiles_w, want)
    np.testing.assert_allclose(v, want, **TOL)

    m = rng.standard_normal((16, tiles, filters)).astype(np.float32)
    shape = (4, tiles_h, tiles_w, filters)
    pooled, argmax = np.full(shape, 7, np.float32), np.full(shape, -1, np.int32)
    want, want_arg = np.full(shape, 7.0), np.full(shape, -1, np.int32)
    cuda.winograd_output_pool(m, bias, 1, 2, out_w, pooled, argmax)
    reference_conv3x3.winograd_output_pool(m, bias, 1, 2, out_w, want, want_arg)
    np.testing.assert_allclose(pooled, want, **TOL)
    np.testing.assert_array_equal(argmax, want_arg)
    assert (pooled[[0, 3]] == 7).all() and (argmax[[0, 3]] == -1).all(), "wrote outside images 1 and 2"

    z = rng.standard_normal((4, out_h, out_w, filters))
    reference_pooling.max_pool2d_forward(z, 2, 2, 2, 2, 0, 0, want, argmax)
    dpooled = (rng.standard_normal(shape) * (rng.random(shape) > 0.3)).astype(np.float32).reshape(4, -1)
    argmax = argmax.reshape(4, -1)
    dm, want = np.full((16, tiles, filters), 7, np.float32), np.zeros((16, tiles, filters))
    cuda.winograd_output_grad(dpooled, argmax, 1, 2, out_w, tiles_h, tiles_w, dm)
    reference_conv3x3.winograd_output_grad(dpooled, argmax, 1, 2, out_w, tiles_h, tiles_w, want)
    np.testing.assert_array_equal(dm, want)  # products by 0 and ±1: exact

    dv = rng.standard_normal((16, tiles, channels)).astype(np.float32)
    dx, want = np.full_like(x, 7), np.full(x.shape, 7.0)
    cuda.winograd_input_grad(dv, 1, 2, plan.geometry, tiles_h, tiles_w, dx)
    reference_conv3x3.winograd_input_grad(dv, 1, 2, plan.geometry, tiles_h, tiles_w, want)
    np.testing.assert_allclose(dx, want, **TOL)
    assert (dx[[0, 3]] == 7).all(), "wrote outside images 1 and 2"
    # ⟨winograd_input(x), dv⟩ = ⟨x, winograd_input_grad(dv)⟩
    assert np.vdot(v.astype(np.float64), dv) == pytest.approx(np.vdot(x[1:3].astype(np.float64), dx[1:3]), rel=1e-4)


def test_winograd_ties_and_nans_pick_the_cell_the_pooling_kernel_picks():
    """The CPU test's case through the GPU stages (the 16 GEMMs in NumPy): a constant image makes every window a
    four-way tie (the first cell wins); a NaN input turns the outputs the direct sum would NaN, and wins there."""
    case = ((10, 10, 2), 3, "valid", None)
    plan = _plan(*case)
    x = np.ones((2, 10, 10, 2), np.float32)
    x[1, 7, 8, 1] = np.nan  # read by outputs rows 5-7, columns 6-7 (the last two tiles of column 3)
    kernel = np.full((3, 3, 2, 3), 0.25, np.float32)  # 0.25 · 18 = 4.5 everywhere: exact in both forms
    bias = np.zeros(3, np.float32)
    v = np.zeros((16, 32, 2), np.float32)
    cuda.winograd_input(x, 0, 2, plan.geometry, 4, 4, v)
    u = (convolution.KRON_G @ kernel.reshape(9, -1).astype(np.float64)).astype(np.float32).reshape(16, 2, 3)
    m = np.matmul(v, u)
    pooled, argmax = np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.int32)
    cuda.winograd_output_pool(m, bias, 0, 2, plan.out_shape[1], pooled, argmax)
    want, want_arg = _plain(plan, x, kernel, bias)
    first_cells = (np.arange(4)[:, None, None] * 2 * 8 + np.arange(4)[None, :, None] * 2) * 3 + np.arange(3)
    np.testing.assert_array_equal(argmax[0], first_cells)
    np.testing.assert_array_equal(argmax, want_arg)
    np.testing.assert_array_equal(pooled, want)  # NaN where it is NaN
    assert (pooled[0] == 4.5).all() and np.isnan(pooled[1, 2:, 3]).all() and np.isnan(pooled).sum() == 6


@pytest.mark.parametrize("in_shape, padding", [((9, 12, 1), "same"), ((7, 9, 1), "valid")], ids=["same", "cropped"])
def test_one_channel_kernels_match_the_oracle_and_the_general_direct_kernel(in_shape, padding):
    rng = np.random.default_rng(6)
    filters = 3
    plan = ConvPlan(BACKEND, in_shape, (3, 3), (1, 1), (1, 1), (padding, padding), filters,
                    crop=tuple(2 * (v // 2) for v in _plan(in_shape, filters, padding, None).out_shape))
    out_h, out_w = plan.out_shape
    x = rng.random((4,) + in_shape).astype(np.float32)
    kernel, bias = rng.standard_normal((9, filters)).astype(np.float32), rng.standard_normal(filters).astype(np.float32)
    shape = (4, out_h // 2, out_w // 2, filters)
    pooled, argmax = np.full(shape, 7, np.float32), np.full(shape, -1, np.int32)
    cuda.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, pooled, argmax)
    want, want_arg = np.full(shape, 7.0), np.full(shape, -1, np.int32)
    reference_conv3x3.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, want, want_arg)
    np.testing.assert_allclose(pooled, want, **TOL)
    np.testing.assert_array_equal(argmax, want_arg)
    assert (pooled[[0, 3]] == 7).all() and (argmax[[0, 3]] == -1).all(), "wrote outside images 1 and 2"
    general, general_arg = np.full_like(pooled, 7), np.full_like(argmax, -1)
    z = np.zeros((plan.positions, filters), np.float32)
    cuda.conv_direct_pool_forward(x, kernel, bias, 1, 2, plan.geometry, (2, 2, 2, 2, 0, 0), z, general, general_arg)
    assert pooled.tobytes() == general.tobytes() and argmax.tobytes() == general_arg.tobytes()

    dpooled = (rng.standard_normal(shape) * (rng.random(shape) > 0.4)).astype(np.float32).reshape(4, -1)
    argmax = argmax.reshape(4, -1)
    argmax[0], argmax[3] = argmax[1], argmax[2]  # images 0 and 3 are not read
    dkernel, want = np.full((9, filters), 9, np.float32), np.zeros((9, filters))
    cuda.conv3x3_pool_weight_grad(x, dpooled, argmax, 1, 2, plan.geometry, dkernel)
    reference_conv3x3.conv3x3_pool_weight_grad(x, dpooled, argmax, 1, 2, plan.geometry, want)
    np.testing.assert_allclose(dkernel, want, **TOL)


def test_one_channel_ties_and_a_nan():
    """A constant image: four-way ties, the first cell wins; a NaN pixel wins the windows reading it, at the
    first cell that does, as the pooling kernel picks it."""
    plan = ConvPlan(BACKEND, (8, 8, 1), (3, 3), (1, 1), (1, 1), ("same", "same"), 2)
    x = np.ones((4, 8, 8, 1), np.float32)
    x[2, 4, 5, 0] = np.nan
    kernel, bias = np.full((9, 2), 0.5, np.float32), np.zeros(2, np.float32)
    shape = (4, 4, 4, 2)
    pooled, argmax = np.full(shape, 7, np.float32), np.full(shape, -1, np.int32)
    cuda.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, pooled, argmax)
    want, want_arg = np.full(shape, 7.0), np.full(shape, -1, np.int32)
    reference_conv3x3.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, want, want_arg)
    np.testing.assert_array_equal(pooled, want)  # sums of 0.5s: exact; NaN where it is NaN
    np.testing.assert_array_equal(argmax, want_arg)
    assert np.isnan(pooled[2]).sum() == 8 and (pooled[1, 1:3, 1:3] == 4.5).all()
