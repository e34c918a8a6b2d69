"""Sparse-input kernels: CSR rows × dense weights and its transpose, without densifying a batch.

A batch is a list of row numbers into one immutable CSR matrix, so shuffling never copies the data.
Wide layers (MNIST's 784 → 512 when its mostly-zero pixels run as CSR) are limited by loads and stores of
the output rows, not by arithmetic, so the loops below add eight non-zeros per pass over an output row.
They chain the eight sums in index order, `((o + v0·w0) + v1·w1) + …`, which is exactly the order of adding
them one at a time: the unrolling changes speed, never bytes.
"""

from numba import njit, prange

from nnctl.engine.settings import KERNEL, PARALLEL_KERNEL


@njit(**KERNEL)
def csr_matmul(indptr, indices, values, rows, w, out):
    """out = X[rows] @ w with X in CSR form. indptr: (N+1,), indices/values: (nnz,), rows: (m,),
    w: (d, units), out: (m, units).

        for b: out[b, :] = sum over k in row rows[b] of values[k] * w[indices[k], :]
    """
    units = w.shape[1]
    for b in range(rows.shape[0]):
        r = rows[b]
        o = out[b]
        for j in range(units):
            o[j] = 0.0
        k, end = indptr[r], indptr[r + 1]
        while k + 8 <= end:
            v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
            v4, v5, v6, v7 = values[k + 4], values[k + 5], values[k + 6], values[k + 7]
            w0, w1, w2, w3 = w[indices[k]], w[indices[k + 1]], w[indices[k + 2]], w[indices[k + 3]]
            w4, w5, w6, w7 = w[indices[k + 4]], w[indices[k + 5]], w[indices[k + 6]], w[indices[k + 7]]
            for j in range(units):
                o[j] = ((((((((o[j] + v0 * w0[j]) + v1 * w1[j]) + v2 * w2[j]) + v3 * w3[j]) + v4 * w4[j])
                         + v5 * w5[j]) + v6 * w6[j]) + v7 * w7[j])
            k += 8
        while k < end:
            v0, w0 = values[k], w[indices[k]]
            for j in range(units):
                o[j] += v0 * w0[j]
            k += 1


@njit(**KERNEL)
def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """dw = X[rows]ᵀ @ dy (the first layer's weight gradient). dy: (m, units), dw: (d, units) overwritten.

        dw = 0; for b, k in row rows[b]: dw[indices[k], :] += values[k] * dy[b, :]

    A scatter: right for narrow layers (IMDB's 16 units). Wide ones use csr_transpose_rows + csc_t_matmul.
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


@njit(**KERNEL)
def csr_transpose_rows(indptr, indices, values, rows, colptr, brow, bval):
    """The batch X[rows] in CSC form; returns its non-zero count. colptr: (d+1,) overwritten;
    brow/bval: (≥ nnz,) receive the batch row number and value of each non-zero, column by column.

        column c holds brow/bval[colptr[c]:colptr[c+1]], batch rows ascending (a stable counting sort)
    """
    d = colptr.shape[0] - 1
    for c in range(d + 1):
        colptr[c] = 0
    for b in range(rows.shape[0]):
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            colptr[indices[k] + 1] += 1
    for c in range(d):
        colptr[c + 1] += colptr[c]
    for b in range(rows.shape[0]):  # colptr[c] walks through column c's slots, then is restored below
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            c = indices[k]
            p = colptr[c]
            brow[p] = b
            bval[p] = values[k]
            colptr[c] = p + 1
    for c in range(d, 0, -1):
        colptr[c] = colptr[c - 1]
    colptr[0] = 0
    return colptr[d]


@njit(**KERNEL)
def csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    """Rows c0..c1-1 of dw = X[rows]ᵀ @ dy, from the batch in CSC form (csr_transpose_rows).

        for c in c0..c1-1: dw[c, :] = sum over p in column c of bval[p] * dy[brow[p], :]

    Same products, summed in the same order (batch rows ascending), as csr_t_matmul's scatter, so the
    bytes agree; each dw row is written once instead of read and written per non-zero. Disjoint column
    ranges can run on different threads.
    """
    units = dy.shape[1]
    for c in range(c0, c1):
        o = dw[c]
        for j in range(units):
            o[j] = 0.0
        p, end = colptr[c], colptr[c + 1]
        while p + 8 <= end:
            v0, v1, v2, v3 = bval[p], bval[p + 1], bval[p + 2], bval[p + 3]
            v4, v5, v6, v7 = bval[p + 4], bval[p + 5], bval[p + 6], bval[p + 7]
            d0, d1, d2, d3 = dy[brow[p]], dy[brow[p + 1]], dy[brow[p + 2]], dy[brow[p + 3]]
            d4, d5, d6, d7 = dy[brow[p + 4]], dy[brow[p + 5]], dy[brow[p + 6]], dy[brow[p + 7]]
            for j in range(units):
                o[j] = ((((((((o[j] + v0 * d0[j]) + v1 * d1[j]) + v2 * d2[j]) + v3 * d3[j]) + v4 * d4[j])
                         + v5 * d5[j]) + v6 * d6[j]) + v7 * d7[j])
            p += 8
        while p < end:
            v0, d0 = bval[p], dy[brow[p]]
            for j in range(units):
                o[j] += v0 * d0[j]
            p += 1


@njit(**PARALLEL_KERNEL)
def csr_matmul_split(indptr, indices, values, rows, w, out, parts):
    """csr_matmul with the batch rows cut into `parts` contiguous ranges, one per thread."""
    m = rows.shape[0]
    for part in prange(parts):
        lo, hi = part * m // parts, (part + 1) * m // parts
        csr_matmul(indptr, indices, values, rows[lo:hi], w, out[lo:hi])


@njit(**PARALLEL_KERNEL)
def csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds):
    """csc_t_matmul over the column ranges bounds[i]..bounds[i+1]-1, one per thread."""
    for part in prange(bounds.shape[0] - 1):
        csc_t_matmul(colptr, brow, bval, dy, dw, bounds[part], bounds[part + 1])
