"""The CUDA dense kernels (nnctl/engine/cuda/) under Numba's CUDA simulator, against the NumPy oracles the CPU
kernels answer to (nnctl.engine.reference). Run by tests/engine/test_cuda_sim.py in a process started with
NUMBA_ENABLE_CUDASIM=1 (the main run does not collect this folder: conftest.py), or on a real GPU with
NNCTL_CUDA_TESTS=gpu (bench/gpu_check.sh)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nnctl.engine import cpu, cuda, reference
from nnctl.engine.cpu.dense import ACTIVATION_CODES

RNG = np.random.default_rng(4)


def _f32(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


def _cases():
    cases = []
    for name, code in ACTIVATION_CODES.items():
        z, bias = _f32(5, 7), _f32(7)
        cases.append((f"bias_act_forward-{name}", "bias_act_forward", [z, bias, code, 0.3, np.zeros_like(z)]))
        y = np.zeros_like(z)
        reference.bias_act_forward(z.copy(), bias, code, 0.3, y)
        cases.append((f"bias_act_backward-{name}", "bias_act_backward",
                      [_f32(5, 7), z + bias, y.astype(np.float32), code, 0.3, np.zeros((5, 7), np.float32),
                       np.zeros(7, np.float32)]))
    z = _f32(1100, 3)  # a tall bias gradient (a convolution's, over the batch's pixels): chunks, then their sums
    cases.append(("bias_act_backward-tall-relu", "bias_act_backward",
                  [_f32(1100, 3), z, np.maximum(z, 0), ACTIVATION_CODES["relu"], 0.0, np.zeros((1100, 3), np.float32),
                   np.zeros(3, np.float32)]))
    cases += [
        ("matmul", "matmul", [_f32(6, 4), _f32(4, 3), np.zeros((6, 3), np.float32)]),
        ("matmul_tn", "matmul_tn", [_f32(4, 6), _f32(4, 3), np.zeros((6, 3), np.float32)]),
        ("matmul_nt", "matmul_nt", [_f32(6, 4), _f32(3, 4), np.zeros((6, 3), np.float32)]),
        ("take_rows", "take_rows", [_f32(9, 4), np.array([3, 0, 8, 3], np.int64), np.zeros((4, 4), np.float32)]),
        ("multiply", "multiply", [_f32(20), _f32(20), np.zeros(20, np.float32)]),
        ("dropout_forward", "dropout_forward", [_f32(30), _f32(30, low=0, high=1), 0.4, np.zeros(30, np.float32),
                                                np.zeros(30, np.float32)]),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, kernel, args", CASES, ids=[case[0] for case in CASES])
def test_each_cuda_kernel_matches_its_oracle(name, kernel, args):
    ours, oracle = copy.deepcopy(args), copy.deepcopy(args)
    getattr(cuda, kernel)(*ours)
    getattr(reference, kernel)(*oracle)
    for mine, theirs in zip(ours, oracle):
        if isinstance(mine, np.ndarray):
            np.testing.assert_allclose(mine, theirs, rtol=2e-5, atol=2e-6, err_msg=name)


def test_the_cuda_kernels_match_the_cpu_kernels_bytes_for_the_exact_ones():
    """Where both compute the same float32 operations in the same order, the bytes agree."""
    for kernel in ("take_rows", "multiply", "dropout_forward"):
        args = next(case[2] for case in CASES if case[1] == kernel)
        ours, theirs = copy.deepcopy(args), copy.deepcopy(args)
        getattr(cuda, kernel)(*ours)
        getattr(cpu, kernel)(*theirs)
        for mine, other in zip(ours, theirs):
            if isinstance(mine, np.ndarray):
                assert mine.tobytes() == other.tobytes(), kernel


def test_every_cpu_kernel_has_a_twin_or_is_named_pending():
    pending = set(cuda.PENDING) | {name for family in cuda.PENDING_FAMILIES for name in getattr(cpu, family).KERNELS}
    missing = [name for name in cpu.KERNELS if name not in cuda.KERNELS and name not in pending]
    assert not missing, f"CPU kernels with no CUDA twin and not listed as pending: {missing}"
    assert not set(cuda.KERNELS) & set(cuda.PENDING)
    assert all(callable(getattr(cuda, name)) for name in cuda.KERNELS)


def test_a_linear_backward_in_place_is_the_column_sums_alone():
    """dz passed as the very array dy (as the device ops pass it for a linear activation or a fused loss): dy
    stays as it is, the bias gradient is its column sums — the bytes of the backward into a separate dz."""
    dy, z = _f32(9, 4), _f32(9, 4)
    separate, db_separate, db = np.zeros_like(dy), np.zeros(4, np.float32), np.zeros(4, np.float32)
    cuda.bias_act_backward(dy, z, z, ACTIVATION_CODES["linear"], 0.0, separate, db_separate)
    before = dy.copy()
    cuda.bias_act_backward(dy, z, z, ACTIVATION_CODES["linear"], 0.0, dy, db)
    assert dy.tobytes() == before.tobytes() == separate.tobytes()
    assert db.tobytes() == db_separate.tobytes()
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5)


def test_the_gpus_own_kernels_against_numpy():
    """The kernels without a CPU twin (the GPU path's reshuffles and Keras masks), each against its NumPy form."""
    targets, weights, rows = _f32(9, 3), _f32(9, 1), np.array([4, 0, 8, 4], np.int64)
    taken, weights_taken = np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32)
    cuda.take_rows_of_two(targets, weights, rows, taken, weights_taken)
    np.testing.assert_array_equal(taken, targets[rows])
    np.testing.assert_array_equal(weights_taken, weights[rows])
    labels, labels_taken = RNG.integers(0, 5, (9, 2)), np.zeros((4, 2), np.int64)  # the wider second
    cuda.take_rows_of_two(weights, labels, rows, weights_taken, labels_taken)
    np.testing.assert_array_equal(labels_taken, labels[rows])
    x, u = _f32(3, 5, 4), RNG.integers(0, 2, (3, 5)).astype(np.uint8)
    out = np.zeros_like(x)
    cuda.reverse_steps(x, out)
    np.testing.assert_array_equal(out, x[:, ::-1])
    flipped = np.zeros((3, 5, 1), np.uint8)
    cuda.reverse_steps(u.reshape(3, 5, 1), flipped)
    np.testing.assert_array_equal(flipped[:, :, 0], u[:, ::-1])
    cuda.mask_steps(x, u, out)
    np.testing.assert_array_equal(out, x * u[:, :, None])
    a, b, total = _f32(11), _f32(11), np.zeros(11, np.float32)
    cuda.add(a, b, total)
    np.testing.assert_array_equal(total, a + b)
    cuda.subtract(a, b, total)
    np.testing.assert_array_equal(total, a - b)
    cuda.divide(a, 3, total)
    np.testing.assert_array_equal(total, a / np.float32(3))
    stacked = np.stack([a, np.where(np.arange(11) % 3 == 0, a, b), b])  # ties: the earlier input keeps its place
    for largest, pick in ((True, np.argmax), (False, np.argmin)):
        best, winner, grad = stacked[0].copy(), np.zeros(11, np.int32), np.zeros(11, np.float32)
        for i in (1, 2):
            cuda.extremum_update(best, winner, stacked[i], i, largest)
        np.testing.assert_array_equal(winner, pick(stacked, axis=0))
        np.testing.assert_array_equal(best, stacked[winner, np.arange(11)])
        cuda.winner_gradient(total, winner, 1, grad)
        np.testing.assert_array_equal(grad, np.where(winner == 1, total, 0))
    wide, part = _f32(6, 7), np.zeros((6, 3), np.float32)
    cuda.take_columns(wide, 2, part)
    np.testing.assert_array_equal(part, wide[:, 2:5])
    cuda.copy_columns(_f32(6, 3) * 0 + part * 2, wide, 4)
    np.testing.assert_array_equal(wide[:, 4:7], part * 2)
    square = np.zeros((7, 6), np.float32)
    cuda.transpose(wide, square)
    np.testing.assert_array_equal(square, wide.T)
    ids, mask = np.array([0, 3, 0, 9, 1], np.int32), np.full(5, 7, np.uint8)
    cuda.id_mask(ids, mask)
    np.testing.assert_array_equal(mask, [0, 1, 0, 1, 1])


def test_the_mask_kernels_against_numpy():
    x = _f32(3, 5, 2)
    x[0, :2], x[2, 4] = 0.0, 0.0
    keep, y = np.zeros((3, 5), np.uint8), np.zeros_like(x)
    cuda.mask_values(x, 0.0, keep, y)
    np.testing.assert_array_equal(keep, np.any(x != 0, axis=-1))
    np.testing.assert_array_equal(y, x * keep[:, :, None])
    keep[1] = 0  # a sequence with no real step: zeros, as Keras's
    share = np.zeros((3, 5), np.float32)
    cuda.step_shares(keep, share)
    want = keep.astype(np.float32) / np.maximum(keep.sum(1, keepdims=True), 1).astype(np.float32)
    np.testing.assert_array_equal(share, want)
    mean = np.zeros((3, 2), np.float32)
    cuda.masked_mean(share, x, mean)
    np.testing.assert_allclose(mean, np.einsum("nt,ntc->nc", want, x), rtol=1e-6, atol=1e-7)
    dy, dx = _f32(3, 2), np.zeros_like(x)
    cuda.spread_steps(share, dy, dx)
    np.testing.assert_array_equal(dx, want[:, :, None] * dy[:, None, :])
