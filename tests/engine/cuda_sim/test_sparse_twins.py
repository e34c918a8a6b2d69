"""The CUDA sparse-input kernels under Numba's CUDA simulator, against the NumPy oracles (run by
tests/engine/test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1)."""

from __future__ import annotations

import copy

import numpy as np

from nnctl.engine import cuda, reference

RNG = np.random.default_rng(9)


def _csr(rows=9, width=30, density=0.4):
    dense = (RNG.random((rows, width)) < density) * RNG.standard_normal((rows, width))
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))]).astype(np.int64)
    indices = np.nonzero(dense)[1].astype(np.int32)
    return indptr, indices, dense[dense != 0].astype(np.float32)


def _same(kernel, args):
    mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
    got, expected = getattr(cuda, kernel)(*mine), getattr(reference, kernel)(*theirs)
    if expected is not None:
        assert got == expected
    for a, b in zip(mine, theirs):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=kernel)


def test_the_csr_products_and_transpose():
    indptr, indices, values = _csr()
    rows = np.array([3, 8, 1, 6, 1, 0], np.int64)
    _same("csr_matmul", [indptr, indices, values, rows, RNG.standard_normal((30, 5)).astype(np.float32),
                         np.zeros((6, 5), np.float32)])
    _same("csr_matmul_split", [indptr, indices, values, rows, RNG.standard_normal((30, 5)).astype(np.float32),
                               np.zeros((6, 5), np.float32), 3])
    dy = RNG.standard_normal((6, 4)).astype(np.float32)
    _same("csr_t_matmul", [indptr, indices, values, rows, dy, np.ones((30, 4), np.float32)])
    nnz = int((indptr[rows + 1] - indptr[rows]).sum())
    _same("csr_transpose_rows", [indptr, indices, values, rows, np.zeros(31, np.int64), np.zeros(nnz, np.int32),
                                 np.zeros(nnz, np.float32)])
    colptr, brow, bval = np.zeros(31, np.int64), np.zeros(nnz, np.int32), np.zeros(nnz, np.float32)
    reference.csr_transpose_rows(indptr, indices, values, rows, colptr, brow, bval)
    _same("csc_t_matmul", [colptr, brow, bval, dy, np.ones((30, 4), np.float32), 2, 27])
    _same("csc_t_matmul_split", [colptr, brow, bval, dy, np.ones((30, 4), np.float32), np.array([2, 9, 10, 28])])


def test_the_weight_gradient_is_the_same_by_either_plan(monkeypatch):
    """csr_t_matmul in parallel (a column's non-zeros placed in batch order) gives the bytes of the one-thread-a-unit
    walk it keeps past its presence-matrix budget (the same additions in the same order), and the CPU kernel's
    values (its vector lanes may fuse a multiply-add); a row repeated in the batch, columns no row holds."""
    from nnctl.engine import cpu
    from nnctl.engine.cuda import sparse

    indptr, indices, values = _csr(rows=12, width=40, density=0.3)
    rows = np.array([3, 8, 1, 11, 1, 0, 7], np.int64)
    dy = RNG.standard_normal((7, 5)).astype(np.float32)
    want = np.full((40, 5), 9, np.float32)
    cpu.csr_t_matmul(indptr, indices, values, rows, dy, want)
    got = {}
    for budget in (1 << 24, 0):
        monkeypatch.setattr(sparse, "_PRESENCE", budget)
        got[budget] = np.full((40, 5), 7, np.float32)
        cuda.csr_t_matmul(indptr, indices, values, rows, dy, got[budget])
        np.testing.assert_allclose(got[budget], want, rtol=1e-6, atol=1e-6)
    assert got[1 << 24].tobytes() == got[0].tobytes()
