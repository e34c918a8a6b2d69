"""Sparse-input kernels: CSR rows × dense weights and its transpose, without densifying a batch.

A batch is a list of row numbers into one immutable CSR matrix, so shuffling never copies the data.
"""

from numba import njit

from nnctl.engine.settings import KERNEL


@njit(**KERNEL)
def csr_matmul(indptr, indices, values, rows, w, out):
    """out = X[rows] @ w with X in CSR form. indptr: (N+1,), indices/values: (nnz,), rows: (m,),
    w: (d, units), out: (m, units).

        for b: out[b, :] = sum over k in row rows[b] of values[k] * w[indices[k], :]
    """
    units = w.shape[1]
    for b in range(rows.shape[0]):
        r = rows[b]
        for j in range(units):
            out[b, j] = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            col = indices[k]
            v = values[k]
            for j in range(units):
                out[b, j] += v * w[col, j]


@njit(**KERNEL)
def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """dw = X[rows]ᵀ @ dy (the first layer's weight gradient). dy: (m, units), dw: (d, units) overwritten.

        dw = 0; for b, k in row rows[b]: dw[indices[k], :] += values[k] * dy[b, :]
    """
    units = dy.shape[1]
    dw[:, :] = 0.0
    for b in range(rows.shape[0]):
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            col = indices[k]
            v = values[k]
            for j in range(units):
                dw[col, j] += v * dy[b, j]
