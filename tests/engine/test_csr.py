"""CSRMatrix.from_dense: the same matrix whatever the chunking, empty rows and empty arrays included."""

import numpy as np
import pytest

from nnctl.engine.csr import CSRMatrix


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
