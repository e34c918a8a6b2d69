"""CSRMatrix.from_dense: the same matrix whatever the chunking, empty rows and empty arrays included."""

import numpy as np
import pytest

from nnctl.engine.csr import CSRMatrix, mostly_zero


@pytest.mark.parametrize("shape", [(0, 5), (1, 3), (57, 7)])
@pytest.mark.parametrize("chunk_rows", [1, 4, 8192])
def test_from_dense_round_trips(shape, chunk_rows):
    rng = np.random.default_rng(1)
    dense = ((rng.random(shape) < 0.3) * rng.standard_normal(shape)).astype(np.float32)
    if shape[0] > 3:
        dense[2] = 0.0  # an empty row
    matrix = CSRMatrix.from_dense(dense, chunk_rows=chunk_rows)
    assert matrix.shape == shape and matrix.nnz == np.count_nonzero(dense)
    assert matrix.indices.dtype == np.int32 and matrix.values.dtype == np.float32
    assert np.array_equal(matrix.to_dense(), dense)
    for r in range(shape[0]):  # columns ascend within each row
        assert np.all(np.diff(matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]]) > 0)


def test_mostly_zero_counts_non_zeros_against_the_threshold():
    x = np.zeros((4, 5), np.float32)
    x[0, :3] = 1.0  # 3 of 20 non-zero: 15 %
    assert mostly_zero(x, 0.15) and not mostly_zero(x, 0.1)
    assert not mostly_zero(x, 0.0)  # 0 turns it off
    assert not mostly_zero(x[0], 0.9)  # only 2-D inputs
    assert not mostly_zero(np.zeros((0, 5), np.float32), 0.5)
