"""The CSR kernels' vector blocks (nnctl/engine/cpu/simd.py): float64 too, and strided arrays refused."""

import numpy as np
import pytest
from numba.core.errors import TypingError

from nnctl.engine import reference
from nnctl.engine.cpu import sparse
from nnctl.engine.csr import CSRMatrix


def _matrix(rng, rows=12, width=30):
    dense = ((rng.random((rows, width)) < 0.5) * rng.standard_normal((rows, width))).astype(np.float32)
    return CSRMatrix.from_dense(dense)


@pytest.mark.parametrize("units", [16, 70, 150])
def test_float64_weights_take_the_same_blocks(units):
    """Gradient checks run the model in float64: the blocks then use double lanes."""
    rng = np.random.default_rng(1)
    x, rows = _matrix(rng), np.array([5, 0, 11, 5])
    w = rng.standard_normal((30, units))
    out, expected = np.zeros((4, units)), np.zeros((4, units))
    sparse.csr_matmul(x.indptr, x.indices, x.values, rows, w, out)
    reference.csr_matmul(x.indptr, x.indices, x.values, rows, w, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal((4, units))
    dw, expected = np.zeros((30, units)), np.zeros((30, units))
    sparse.csr_t_matmul(x.indptr, x.indices, x.values, rows, dy, dw)
    reference.csr_t_matmul(x.indptr, x.indices, x.values, rows, dy, expected)
    np.testing.assert_allclose(dw, expected, rtol=1e-12, atol=1e-12)


def test_strided_or_mixed_arrays_are_refused_not_misread():
    """The blocks address rows by shape alone, so only C-contiguous matrices of one dtype may reach them."""
    rng = np.random.default_rng(2)
    x, rows = _matrix(rng), np.array([1, 2])
    w = np.asfortranarray(rng.standard_normal((30, 16)).astype(np.float32))
    with pytest.raises(TypingError):
        sparse.csr_matmul(x.indptr, x.indices, x.values, rows, w, np.zeros((2, 16), np.float32))
    with pytest.raises(TypingError):
        sparse.csr_matmul(x.indptr, x.indices, x.values, rows, np.ascontiguousarray(w), np.zeros((2, 16)))
