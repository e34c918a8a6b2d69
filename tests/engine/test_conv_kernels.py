"""The conv kernels against their NumPy oracles (nnctl/engine/reference_conv.py), and the chunked plan
(nnctl/engine/convolution.py) against a plain NumPy convolution, on 1 and 2 threads, with tiny chunks."""

import numpy as np
import pytest

from nnctl.engine import convolution, reference_conv
from nnctl.engine.backend import get_backend
from nnctl.engine.convolution import ConvPlan, output_length

BACKEND = get_backend("cpu")
# (in (h, w, c), kernel, strides, dilation, paddings): 1-channel direct path, im2col path, odd sizes
SHAPES = [
    ((7, 6, 1), (3, 3), (1, 1), (1, 1), ("valid", "valid")),
    ((7, 6, 3), (3, 2), (2, 1), (1, 1), ("same", "same")),
    ((8, 9, 5), (2, 4), (1, 1), (2, 1), ("same", "same")),
    ((1, 11, 4), (1, 3), (1, 1), (1, 3), ("valid", "causal")),
    ((1, 10, 6), (1, 4), (1, 3), (1, 1), ("valid", "same")),
    ((5, 5, 2), (5, 5), (1, 1), (1, 1), ("same", "valid")),
]


def _geometry(in_shape, kernel, strides, dilation, paddings):
    lengths = [output_length(s, k, st, d, p) for s, k, st, d, p in zip(in_shape[:2], kernel, strides, dilation,
                                                                        paddings)]
    return tuple(int(v) for v in (*kernel, *strides, *dilation, lengths[0][1], lengths[1][1],
                                  lengths[0][0], lengths[1][0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_im2col_col2im_and_direct_kernels_match_the_oracle(shape, dtype):
    rng = np.random.default_rng(0)
    in_shape, kernel, filters = shape[0], shape[1], 3
    geometry = _geometry(*shape)
    x = rng.standard_normal((4,) + in_shape).astype(dtype)
    depth, rows = kernel[0] * kernel[1] * in_shape[2], 2 * geometry[8] * geometry[9]
    cols, want = np.full((rows, depth), 7, dtype), np.zeros((rows, depth), dtype)
    BACKEND.im2col(x, 1, 2, geometry, cols)
    reference_conv.im2col(x, 1, 2, geometry, want)
    np.testing.assert_array_equal(cols, want)

    dcols = rng.standard_normal((rows, depth)).astype(dtype)
    dx, want_dx = np.full_like(x, 5), np.full_like(x, 5)
    BACKEND.col2im(dcols, 1, 2, geometry, dx)
    reference_conv.col2im(dcols, 1, 2, geometry, want_dx)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
    assert (dx[0] == 5).all() and (dx[3] == 5).all(), "col2im wrote outside its images"

    w = rng.standard_normal((depth, filters)).astype(dtype)
    z, want_z = np.zeros((rows, filters), dtype), np.zeros((rows, filters))
    BACKEND.conv_direct_forward(x, w, 1, 2, geometry, z)
    reference_conv.conv_direct_forward(x, w, 1, 2, geometry, want_z)
    np.testing.assert_allclose(z, want_z, rtol=1e-5, atol=1e-5)

    dz = rng.standard_normal((rows, filters)).astype(dtype)
    dw, want_dw = np.full((depth, filters), 9, dtype), np.zeros((depth, filters))
    BACKEND.conv_direct_weight_grad(x, dz, 1, 2, geometry, dw)
    reference_conv.conv_direct_weight_grad(x, dz, 1, 2, geometry, want_dw)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)


# (conv shape from SHAPES, pooling (size, strides, padding)): 2×2/2 (the fast path), overlapping 3×3/2 'same',
# and a 1-D window of 2 at stride 1
POOLED = [(SHAPES[0], ((2, 2), (2, 2), "valid")), (SHAPES[1], ((3, 3), (2, 2), "same")),
          (SHAPES[4], ((1, 2), (1, 1), "valid"))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, window", POOLED)
def test_direct_conv_pool_kernels_match_the_oracle_and_the_kernels_they_fuse(shape, window, dtype):
    """conv_direct_pool_*: the oracle's numbers, and the same bytes as conv_direct_* + bias + max pooling called
    image by image (the layer's other path), on images 1 and 2 of 4 only."""
    rng = np.random.default_rng(1)
    in_shape, filters = shape[0], 5
    geometry = _geometry(*shape)
    out_h, out_w = geometry[8:]
    (ph, pw), (sh, sw), padding = window
    (pooled_h, pt), (pooled_w, pl) = output_length(out_h, ph, sh, 1, padding), output_length(out_w, pw, sw, 1, padding)
    window = (ph, pw, sh, sw, pt, pl)
    pooled_shape = (4, pooled_h, pooled_w, filters)
    x = rng.standard_normal((4,) + in_shape).astype(dtype)
    depth = shape[1][0] * shape[1][1] * in_shape[2]
    w, bias = rng.standard_normal((depth, filters)).astype(dtype), rng.standard_normal(filters).astype(dtype)
    z = np.empty((out_h * out_w, filters), dtype)
    pooled, argmax = np.full(pooled_shape, 7, dtype), np.full(pooled_shape, -1, np.int32)
    BACKEND.conv_direct_pool_forward(x, w, bias, 1, 2, geometry, window, z, pooled, argmax)
    want, want_arg = np.full(pooled_shape, 7, dtype), np.full(pooled_shape, -1, np.int32)
    reference_conv.conv_direct_pool_forward(x, w, bias, 1, 2, geometry, window, z.astype(np.float64), want,
                                            want_arg)
    np.testing.assert_allclose(pooled, want, rtol=1e-5, atol=1e-5)
    assert (argmax == want_arg).all() and (pooled[[0, 3]] == 7).all()
    apart, apart_arg = np.full_like(pooled, 7), np.full_like(argmax, -1)
    for b in (1, 2):
        BACKEND.conv_direct_forward(x, w, b, 1, geometry, z)
        BACKEND.bias_act_forward(z, bias, 0, 0.0, z)
        BACKEND.max_pool2d_forward(z.reshape(1, out_h, out_w, filters), *window, apart[b:b + 1], apart_arg[b:b + 1])
    assert pooled.tobytes() == apart.tobytes() and argmax.tobytes() == apart_arg.tobytes()

    dpooled = rng.standard_normal(pooled.shape).astype(dtype).reshape(4, -1)
    flat_arg = argmax.reshape(4, -1)
    dz, one = np.empty_like(z), np.empty((depth, filters), dtype)
    dw = np.full((depth, filters), 9, dtype)
    BACKEND.conv_direct_pool_weight_grad(x, dpooled, flat_arg, 1, 2, geometry, dz, one, dw)
    want_dw = np.zeros((depth, filters))
    reference_conv.conv_direct_pool_weight_grad(x, dpooled, flat_arg, 1, 2, geometry, dz.astype(np.float64),
                                                one.astype(np.float64), want_dw)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)
    apart_dw, part = np.empty_like(dw), np.empty_like(dw)
    for b in (1, 2):
        BACKEND.max_pool_backward(dpooled[b:b + 1], flat_arg[b:b + 1], dz.reshape(1, -1))
        BACKEND.conv_direct_weight_grad(x, dz, b, 1, geometry, apart_dw if b == 1 else part)
    apart_dw += part
    assert dw.tobytes() == apart_dw.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window, filters, depth", [((2, 2, 2, 2, 0, 0), 5, 12), ((3, 3, 2, 2, 0, 0), 5, 12),
                                                    ((2, 2, 2, 2, 0, 0), 64, 288)],
                         ids=["2x2", "overlapping 3x3", "MNIST's widths"])
def test_pooled_gradient_kernels_match_the_oracle(window, filters, depth, dtype):
    """conv_pooled_weight_grad / _columns_grad (the columns plan fused with its pooling): the kernel and column
    gradients of images 1 and 2 of 4 from the pooled gradient (a third of it zero, as behind a ReLU) and the
    pooling's winners (an overlapping window can make a cell win twice)."""
    rng = np.random.default_rng(2)
    out_h, out_w = 7, 6
    ph, pw, sh, sw, pt, pl = window
    pooled_shape = (4, (out_h - ph) // sh + 1, (out_w - pw) // sw + 1, filters)
    z = rng.standard_normal((4, out_h, out_w, filters))
    pooled, argmax = np.empty(pooled_shape), np.empty(pooled_shape, np.int32)
    BACKEND.max_pool2d_forward(z, *window, pooled, argmax)
    dpooled = (rng.standard_normal(pooled_shape) * (rng.random(pooled_shape) > 0.33)).astype(dtype).reshape(4, -1)
    argmax = argmax.reshape(4, -1)
    positions = out_h * out_w
    cols = rng.standard_normal((2 * positions, depth)).astype(dtype)
    dkernel, want = np.full((depth, filters), 9, dtype), np.zeros((depth, filters))
    BACKEND.conv_pooled_weight_grad(cols, dpooled, argmax, 1, 2, positions, dkernel)
    reference_conv.conv_pooled_weight_grad(cols, dpooled, argmax, 1, 2, positions, want)
    np.testing.assert_allclose(dkernel, want, rtol=1e-5, atol=1e-5)
    kernel_t = rng.standard_normal((filters, depth)).astype(dtype)
    dcols, want = np.full((2 * positions, depth), 9, dtype), np.zeros((2 * positions, depth))
    BACKEND.conv_pooled_columns_grad(dpooled, argmax, kernel_t, 1, 2, positions, dcols)
    reference_conv.conv_pooled_columns_grad(dpooled, argmax, kernel_t, 1, 2, positions, want)
    np.testing.assert_allclose(dcols, want, rtol=1e-5, atol=1e-5)
    assert (dcols == 0).all(axis=1).any(), "every row had a winner: the rows without one are untested"


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[2] == (1, 1)])
def test_tap_shift_kernels_match_the_oracle(shape):
    rng = np.random.default_rng(5)
    (height, width, _), kernel, filters = shape[0], shape[1], 3
    geometry = _geometry(*shape)
    taps, outputs = kernel[0] * kernel[1], 3 * geometry[8] * geometry[9]
    y = rng.standard_normal((3 * height * width, taps * filters)).astype(np.float32)
    z, want = np.full((outputs, filters), 4, np.float32), np.zeros((outputs, filters), np.float32)
    BACKEND.conv_taps_sum(y, 3, height, width, geometry, z)
    reference_conv.conv_taps_sum(y, 3, height, width, geometry, want)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-5)
    dz = rng.standard_normal((outputs, filters)).astype(np.float32)
    spread, want = np.full_like(y, 4), np.zeros_like(y)
    BACKEND.conv_taps_spread(dz, 3, height, width, geometry, spread)
    reference_conv.conv_taps_spread(dz, 3, height, width, geometry, want)
    np.testing.assert_array_equal(spread, want)


def test_sum_partials_adds_in_chunk_order():
    partials = np.random.default_rng(1).standard_normal((5, 3, 4)).astype(np.float32)
    out, want = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)
    BACKEND.sum_partials(partials, 4, out)
    reference_conv.sum_partials(partials, 4, want)
    expected = ((partials[0] + partials[1]) + partials[2]) + partials[3]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, want, rtol=1e-6)


@pytest.mark.parametrize("padding, size, kernel, stride, dilation, expected", [
    ("valid", 28, 3, 1, 1, (26, 0)), ("valid", 7, 3, 2, 1, (3, 0)), ("valid", 4, 3, 1, 2, (0, 0)),
    ("same", 7, 3, 2, 1, (4, 1)), ("same", 6, 2, 1, 1, (6, 0)), ("same", 6, 4, 1, 1, (6, 1)),
    ("same", 10, 3, 1, 3, (10, 3)), ("causal", 10, 3, 1, 2, (10, 4)), ("causal", 10, 3, 3, 1, (4, 2)),
])
def test_output_length_and_padding_follow_tensorflow(padding, size, kernel, stride, dilation, expected):
    assert output_length(size, kernel, stride, dilation, padding) == expected


def _numpy_conv(x, w, geometry):
    """The whole batch through the oracle's im2col, in float64."""
    rows = x.shape[0] * geometry[8] * geometry[9]
    cols = np.zeros((rows, w.shape[0]))
    reference_conv.im2col(x.astype(np.float64), 0, x.shape[0], geometry, cols)
    return cols


def _plan_run(shape, x, w, dz, monkeypatch, chunk_bytes, threads, method=None, keep=False):
    monkeypatch.setattr(convolution, "WORKSPACE_BYTES", chunk_bytes)
    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    monkeypatch.setenv("NNCTL_THREADS", str(threads))
    plan = ConvPlan(BACKEND, shape[0], *shape[1:4], shape[4], w.shape[1], method)
    z = np.zeros((x.shape[0] * plan.positions, w.shape[1]), x.dtype)
    plan.forward(x, w, z, keep=keep)
    dw, dx = np.zeros_like(w), np.zeros_like(x)
    plan.backward(x, dz, w, dw, dx)
    return plan, z, dw, dx


METHODS = [(shape, method) for shape in SHAPES for method in ("direct", "columns", "taps")
           if method != "taps" or shape[2] == (1, 1)]


@pytest.mark.parametrize("keep", [False, True], ids=["columns-again", "columns-kept"])
@pytest.mark.parametrize("shape, method", METHODS)
def test_the_plan_matches_numpy_across_chunk_boundaries(shape, method, keep, monkeypatch):
    rng = np.random.default_rng(2)
    geometry = _geometry(*shape)
    x = rng.standard_normal((7,) + shape[0]).astype(np.float32)
    depth = shape[1][0] * shape[1][1] * shape[0][2]
    w = rng.standard_normal((depth, 4)).astype(np.float32)
    dz = rng.standard_normal((7 * geometry[8] * geometry[9], 4)).astype(np.float32)
    cols = _numpy_conv(x, w, geometry)
    want_dcols = dz.astype(np.float64) @ w.T
    want_dx = np.zeros(x.shape)
    reference_conv.col2im(want_dcols, 0, 7, geometry, want_dx)
    image_bytes = (shape[0][0] * shape[0][1] * shape[1][0] * shape[1][1] * 4 * 4 if method == "taps"
                   else geometry[8] * geometry[9] * depth * 4)
    monkeypatch.setattr(convolution, "MIN_CHUNK_MACS", 1 << 30)
    for chunk_bytes in (1, 3 * image_bytes, 1 << 30):  # 1, 3 and all 7 images a chunk
        plan, z, dw, dx = _plan_run(shape, x, w, dz, monkeypatch, chunk_bytes, 2, method, keep)
        assert plan.method == method
        assert len(plan.chunks(7)) == {1: 7, 1 << 30: 1}.get(chunk_bytes, 3)
        np.testing.assert_allclose(z, cols @ w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dw, cols.T @ dz, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, method", [(SHAPES[0], "direct"), (SHAPES[2], "columns"), (SHAPES[3], "taps")])
def test_bytes_do_not_depend_on_the_thread_count(shape, method, monkeypatch):
    rng = np.random.default_rng(3)
    geometry = _geometry(*shape)
    x = rng.standard_normal((9,) + shape[0]).astype(np.float32)
    w = rng.standard_normal((shape[1][0] * shape[1][1] * shape[0][2], 5)).astype(np.float32)
    dz = rng.standard_normal((9 * geometry[8] * geometry[9], 5)).astype(np.float32)
    runs = [_plan_run(shape, x, w, dz, monkeypatch, 1, threads, method, keep)[1:]
            for threads, keep in ((1, False), (2, False), (1, True), (2, True))]
    for other in runs[1:]:
        for got, want in zip(other, runs[0]):
            assert got.tobytes() == want.tobytes()


def test_a_forked_child_gets_its_own_pool(monkeypatch):
    import os

    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    monkeypatch.setenv("NNCTL_THREADS", "2")
    shape = SHAPES[2]
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6,) + shape[0]).astype(np.float32)
    w = rng.standard_normal((shape[1][0] * shape[1][1] * shape[0][2], 3)).astype(np.float32)
    plan = ConvPlan(BACKEND, shape[0], *shape[1:4], shape[4], 3, "columns")
    z = np.zeros((6 * plan.positions, 3), np.float32)
    plan.forward(x, w, z)  # the parent's pool now exists
    pid = os.fork()
    if pid == 0:  # the child: the same call must finish (it hung on the parent's threads before)
        import signal

        signal.alarm(20)  # a hang fails the test instead of stalling the suite
        try:
            again = np.zeros_like(z)
            plan.forward(x, w, again)
            os._exit(0 if again.tobytes() == z.tobytes() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_kept_columns_serve_only_the_batch_they_came_from():
    shape = SHAPES[2]
    rng = np.random.default_rng(8)
    x1, x2 = (rng.standard_normal((4,) + shape[0]).astype(np.float32) for _ in range(2))
    w = rng.standard_normal((shape[1][0] * shape[1][1] * shape[0][2], 3)).astype(np.float32)
    plan = ConvPlan(BACKEND, shape[0], *shape[1:4], shape[4], 3, "columns")
    z = np.zeros((4 * plan.positions, 3), np.float32)
    dz = rng.standard_normal(z.shape).astype(np.float32)
    plan.forward(x1, w, z, keep=True)
    plan.forward(x2, w, z)  # an inference call in between (validation) keeps nothing
    dw, want = np.zeros_like(w), np.zeros_like(w)
    plan.backward(x2, dz, w, dw)
    ConvPlan(BACKEND, shape[0], *shape[1:4], shape[4], 3, "columns").backward(x2, dz, w, want)
    assert dw.tobytes() == want.tobytes()


def test_two_threads_work_on_one_call_at_once_and_one_thread_works_alone(monkeypatch):
    import threading

    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    monkeypatch.setattr(convolution, "MIN_CHUNK_MACS", 1)  # one image a chunk
    shape = SHAPES[2]
    x = np.ones((6,) + shape[0], np.float32)
    w = np.ones((shape[1][0] * shape[1][1] * shape[0][2], 3), np.float32)
    plan = ConvPlan(BACKEND, shape[0], *shape[1:4], shape[4], 3, "columns")
    z = np.zeros((6 * plan.positions, 3), np.float32)
    for threads in ("1", "2"):
        monkeypatch.setenv("NNCTL_THREADS", threads)
        seen, other = [], threading.Event()

        def after(index, rows):
            seen.append(threading.get_ident())
            if seen[0] != seen[-1]:
                other.set()
            if index == 0 and threads == "2":  # holds its thread until another one has done a chunk
                assert other.wait(10), "no second thread took a chunk"

        plan.forward(x, w, z, after=after)
        assert len(seen) == len(plan.chunks(6)) == 6
        assert len(set(seen)) == int(threads)
