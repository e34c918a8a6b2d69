"""A 3×3 conv under 2×2 max pooling (nnctl/engine/cpu/conv3x3.py). Winograd F(2×2, 3×3): each stage against its
NumPy oracle (nnctl/engine/reference_conv3x3.py), and the whole chunked plan against a plain convolution + bias +
pooling, in float64 (exact up to rounding) and float32 (a few ulp), the same bytes on 1 or 2 threads and any
chunking. The one-channel kernels: against their oracles, and the same bytes as the general direct kernels."""

import numpy as np
import pytest

from nnctl.engine import convolution, reference_conv, reference_pooling, reference_conv3x3
from nnctl.engine.backend import get_backend
from nnctl.engine.convolution import ConvPlan

BACKEND = get_backend("cpu")
# (input (h, w, c), filters, padding, crop): MNIST's second conv (11 × 11 cropped to 10 × 10), 'same' padding
# (the tiles read zeros past every edge), an odd output cropped on both axes, a row of tiles
CASES = [((13, 13, 32), 64, "valid", (10, 10)), ((10, 8, 3), 5, "same", None), ((9, 11, 4), 17, "valid", (6, 8)),
         ((4, 12, 2), 3, "same", None)]


def _plan(in_shape, filters, padding, crop):
    return ConvPlan(BACKEND, in_shape, (3, 3), (1, 1), (1, 1), (padding, padding), filters, crop=crop)


def _operands(case, dtype, n=5, seed=0):
    rng = np.random.default_rng(seed)
    in_shape, filters = case[0], case[1]
    x = rng.standard_normal((n,) + in_shape).astype(dtype)
    kernel = rng.standard_normal((3, 3, in_shape[2], filters)).astype(dtype)
    return x, kernel, rng.standard_normal(filters).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_transform_is_g_g_gt(dtype):
    kernel = np.random.default_rng(4).standard_normal((3, 3, 2, 5)).astype(dtype)
    u = np.zeros((16, 10), dtype)
    BACKEND.gemm(convolution.KRON_G.astype(dtype), kernel.reshape(9, -1), u)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    want = np.einsum("ai,ijcf,bj->abcf", g, kernel.astype(np.float64), g).reshape(16, 10)
    np.testing.assert_allclose(u, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_each_stage_matches_its_oracle(case, dtype):
    plan = _plan(*case)
    x, kernel, bias = _operands(case, dtype)
    channels, filters = case[0][2], case[1]
    tiles_h, tiles_w = plan.out_shape[0] // 2, plan.out_shape[1] // 2
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}

    tiles = 2 * tiles_h * tiles_w  # images 1 and 2 of 5
    v, want = np.full((16, tiles, channels), 7, dtype), np.zeros((16, tiles, channels))
    BACKEND.winograd_input(x, 1, 2, plan.geometry, tiles_h, tiles_w, v)
    reference_conv3x3.winograd_input(x, 1, 2, plan.geometry, tiles_h, tiles_w, want)
    np.testing.assert_allclose(v, want, **tol)

    m = np.random.default_rng(1).standard_normal((16, tiles, filters)).astype(dtype)
    shape = (5, tiles_h, tiles_w, filters)
    pooled, argmax = np.full(shape, 7, dtype), np.full(shape, -1, np.int32)
    want, want_arg = np.full(shape, 7.0), np.full(shape, -1, np.int32)
    BACKEND.winograd_output_pool(m, bias, 1, 2, plan.out_shape[1], pooled, argmax)
    reference_conv3x3.winograd_output_pool(m, bias, 1, 2, plan.out_shape[1], want, want_arg)
    np.testing.assert_allclose(pooled, want, **tol)
    np.testing.assert_array_equal(argmax, want_arg)
    assert (pooled[[0, 3, 4]] == 7).all() and (argmax[[0, 3, 4]] == -1).all(), "wrote outside images 1 and 2"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_each_backward_stage_matches_its_oracle_and_is_the_forward_stages_adjoint(case, dtype):
    plan = _plan(*case)
    x, _, _ = _operands(case, dtype)
    rng = np.random.default_rng(7)
    channels, filters, (out_h, out_w) = case[0][2], case[1], plan.out_shape
    tiles_h, tiles_w = out_h // 2, out_w // 2
    tiles = 2 * tiles_h * tiles_w  # images 1 and 2 of 5
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}

    z = rng.standard_normal((5, out_h, out_w, filters))
    pooled, argmax = np.empty((5, tiles_h, tiles_w, filters)), np.empty((5, tiles_h, tiles_w, filters), np.int32)
    BACKEND.max_pool2d_forward(z, 2, 2, 2, 2, 0, 0, pooled, argmax)
    dpooled = (rng.standard_normal(pooled.shape) * (rng.random(pooled.shape) > 0.3)).astype(dtype).reshape(5, -1)
    argmax = argmax.reshape(5, -1)
    dm, want = np.full((16, tiles, filters), 7, dtype), np.zeros((16, tiles, filters))
    BACKEND.winograd_output_grad(dpooled, argmax, 1, 2, out_w, tiles_h, tiles_w, dm)
    reference_conv3x3.winograd_output_grad(dpooled, argmax, 1, 2, out_w, tiles_h, tiles_w, want)
    np.testing.assert_allclose(dm, want, **tol)

    dv = rng.standard_normal((16, tiles, channels)).astype(dtype)
    dx, want = np.full_like(x, 7), np.full(x.shape, 7.0)
    BACKEND.winograd_input_grad(dv, 1, 2, plan.geometry, tiles_h, tiles_w, dx)
    reference_conv3x3.winograd_input_grad(dv, 1, 2, plan.geometry, tiles_h, tiles_w, want)
    np.testing.assert_allclose(dx, want, **tol)
    assert (dx[[0, 3, 4]] == 7).all(), "wrote outside images 1 and 2"
    v = np.zeros((16, tiles, channels), dtype)  # ⟨winograd_input(x), dv⟩ = ⟨x, winograd_input_grad(dv)⟩
    BACKEND.winograd_input(x, 1, 2, plan.geometry, tiles_h, tiles_w, v)
    assert np.vdot(v.astype(np.float64), dv) == pytest.approx(np.vdot(x[1:3].astype(np.float64), dx[1:3]),
                                                              rel=1e-4 if dtype == np.float32 else 1e-10)


def _plain(plan, x, kernel, bias):
    """conv + bias through the oracle's im2col (float64), pooled by the pooling oracle."""
    n, filters = x.shape[0], kernel.shape[-1]
    cols = np.zeros((n * plan.positions, plan.depth))
    reference_conv.im2col(x.astype(np.float64), 0, n, plan.geometry, cols)
    z = (cols @ kernel.reshape(plan.depth, filters).astype(np.float64) + bias).reshape(n, *plan.out_shape, filters)
    shape = (n, plan.out_shape[0] // 2, plan.out_shape[1] // 2, filters)
    pooled, argmax = np.zeros(shape), np.zeros(shape, np.int32)
    reference_pooling.max_pool2d_forward(z, 2, 2, 2, 2, 0, 0, pooled, argmax)
    return pooled, argmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_the_plan_pools_the_convolution_in_chunks_on_one_or_two_threads(case, dtype, monkeypatch):
    x, kernel, bias = _operands(case, dtype, n=9, seed=3)
    want, want_arg = _plain(_plan(*case), x, kernel, bias)
    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    runs = []
    for threads, chunk_bytes in ((1, convolution.WORKSPACE_BYTES), (2, 1), (2, convolution.WORKSPACE_BYTES)):
        monkeypatch.setattr(convolution, "WORKSPACE_BYTES", chunk_bytes)  # 1: a chunk per image
        monkeypatch.setenv("NNCTL_THREADS", str(threads))
        plan = _plan(*case)
        pooled, argmax = np.full(want.shape, 7, dtype), np.full(want.shape, -1, np.int32)
        plan.winograd_pool_forward(x, kernel, bias, pooled, argmax)
        runs.append((pooled, argmax))
    pooled, argmax = runs[0]
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}
    np.testing.assert_allclose(pooled, want, **tol)
    np.testing.assert_array_equal(argmax, want_arg)  # random data: no two window cells within rounding
    for other, other_arg in runs[1:]:
        assert other.tobytes() == pooled.tobytes() and other_arg.tobytes() == argmax.tobytes()


def test_ties_and_nans_pick_the_cell_the_pooling_kernel_picks():
    """A constant image makes every window a four-way tie (the first cell wins). A NaN input: a tile's output
    row (column) combines only the three input rows (columns) the direct sum reads, so the same outputs turn NaN,
    and the NaN wins its window at the same cell as in the pooling kernel."""
    case = ((10, 10, 2), 3, "valid", None)
    plan = _plan(*case)
    x = np.ones((2, 10, 10, 2), np.float32)
    x[1, 7, 8, 1] = np.nan  # read by outputs rows 5-7, columns 6-7 (the last two tiles of column 3)
    kernel = np.full((3, 3, 2, 3), 0.25, np.float32)  # 0.25 · 18 = 4.5 everywhere: exact in both forms
    bias = np.zeros(3, np.float32)
    pooled, argmax = np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.int32)
    plan.winograd_pool_forward(x, kernel, bias, pooled, argmax)
    want, want_arg = _plain(plan, x, kernel, bias)
    first_cells = (np.arange(4)[:, None, None] * 2 * 8 + np.arange(4)[None, :, None] * 2) * 3 + np.arange(3)
    np.testing.assert_array_equal(argmax[0], first_cells)
    np.testing.assert_array_equal(argmax, want_arg)
    np.testing.assert_array_equal(pooled, want)  # NaN where it is NaN
    assert (pooled[0] == 4.5).all() and np.isnan(pooled[1, 2:, 3]).all() and np.isnan(pooled).sum() == 6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_shape, padding", [((28, 28, 1), "valid"), ((9, 12, 1), "same"), ((7, 9, 1), "valid")],
                         ids=["MNIST", "same", "odd, cropped"])
def test_one_channel_kernels_match_the_oracle_and_the_general_direct_kernels(in_shape, padding, dtype):
    rng = np.random.default_rng(6)
    plan = ConvPlan(BACKEND, in_shape, (3, 3), (1, 1), (1, 1), (padding, padding), 32,
                    crop=tuple(2 * (v // 2) for v in _plan(in_shape, 32, padding, None).out_shape))
    assert plan.method == "direct"
    out_h, out_w = plan.out_shape
    x = rng.random((4,) + in_shape).astype(dtype)
    kernel, bias = rng.standard_normal((9, 32)).astype(dtype), rng.standard_normal(32).astype(dtype)
    shape = (4, out_h // 2, out_w // 2, 32)
    pooled, argmax = np.full(shape, 7, dtype), np.full(shape, -1, np.int32)
    BACKEND.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, pooled, argmax)
    want, want_arg = np.full(shape, 7.0), np.full(shape, -1, np.int32)
    reference_conv3x3.conv3x3_pool_forward(x, kernel, bias, 1, 2, plan.geometry, want, want_arg)
    np.testing.assert_allclose(pooled, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(argmax, want_arg)
    assert (pooled[[0, 3]] == 7).all() and (argmax[[0, 3]] == -1).all(), "wrote outside images 1 and 2"
    general, general_arg = np.full_like(pooled, 7), np.full_like(argmax, -1)
    z = np.empty((plan.positions, 32), dtype)
    BACKEND.conv_direct_pool_forward(x, kernel, bias, 1, 2, plan.geometry, (2, 2, 2, 2, 0, 0), z, general,
                                     general_arg)
    np.testing.assert_allclose(pooled, general, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(argmax, general_arg)

    dpooled = (rng.standard_normal(shape) * (rng.random(shape) > 0.4)).astype(dtype).reshape(4, -1)
    argmax = argmax.reshape(4, -1)
    argmax[0], argmax[3] = argmax[1], argmax[2]  # images 0 and 3 are not read
    dkernel, want = np.full((9, 32), 9, dtype), np.zeros((9, 32))
    BACKEND.conv3x3_pool_weight_grad(x, dpooled, argmax, 1, 2, plan.geometry, dkernel)
    reference_conv3x3.conv3x3_pool_weight_grad(x, dpooled, argmax, 1, 2, plan.geometry, want)
    np.testing.assert_allclose(dkernel, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_the_plan_backward_gives_the_kernel_and_input_gradients(case, dtype, monkeypatch):
    """winograd_pool_backward against the oracle's im2col sums over the unpooled gradient, with the tiles the
    training forward kept or recomputed, chunk by chunk on 1 or 2 threads."""
    x, kernel, bias = _operands(case, dtype, n=9, seed=8)
    plan = _plan(*case)
    n, filters = x.shape[0], case[1]
    want_pooled, argmax = _plain(plan, x, kernel, bias)
    rng = np.random.default_rng(9)
    dpooled = (rng.standard_normal(want_pooled.shape) * (rng.random(want_pooled.shape) > 0.3)).astype(dtype)
    dpooled, argmax = dpooled.reshape(n, -1), argmax.reshape(n, -1)
    dz = np.zeros((n, plan.positions * filters))
    reference_pooling.max_pool_backward(dpooled.astype(np.float64), argmax, dz)
    dz = dz.reshape(-1, filters)
    cols = np.zeros((n * plan.positions, plan.depth))
    reference_conv.im2col(x.astype(np.float64), 0, n, plan.geometry, cols)
    want_dkernel = cols.T @ dz
    want_dx = np.zeros(x.shape)
    reference_conv.col2im(dz @ kernel.reshape(plan.depth, filters).astype(np.float64).T, 0, n, plan.geometry,
                          want_dx)
    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    runs = []
    for threads, chunk_bytes, keep in ((1, convolution.WORKSPACE_BYTES, True), (2, 1, True),
                                       (2, convolution.WORKSPACE_BYTES, False)):
        monkeypatch.setattr(convolution, "WORKSPACE_BYTES", chunk_bytes)
        monkeypatch.setenv("NNCTL_THREADS", str(threads))
        plan = _plan(*case)
        pooled, forward_argmax = np.empty(want_pooled.shape, dtype), np.empty(want_pooled.shape, np.int32)
        plan.winograd_pool_forward(x, kernel, bias, pooled, forward_argmax, keep=keep)
        dkernel, dx = np.full((plan.depth, filters), 9, dtype), np.full_like(x, 9)
        plan.winograd_pool_backward(x, dpooled, forward_argmax.reshape(n, -1), kernel, dkernel, dx,
                                    lambda index, first, count: None)
        runs.append((dkernel, dx))
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    np.testing.assert_allclose(runs[0][0], want_dkernel, **tol)
    np.testing.assert_allclose(runs[0][1], want_dx, **tol)
    np.testing.assert_allclose(runs[1][0], runs[0][0], **tol)  # a chunk an image: other sums, other bytes
    np.testing.assert_allclose(runs[1][1], runs[0][1], **tol)
    for got, want in zip(runs[2], runs[0]):  # the same chunks on 1 or 2 threads, the tiles kept or not
        assert got.tobytes() == want.tobytes()
