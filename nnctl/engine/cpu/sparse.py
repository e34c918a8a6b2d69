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
def _add_scaled_rows(o, src, rows, scales, start, end):
    """o += Σ scales[k] · src[rows[k], :] for k in start..end-1, eight rows per pass over o, chained in k order."""
    units = o.shape[0]
    k = start
    while k + 8 <= end:
        s0, s1, s2, s3 = scales[k], scales[k + 1], scales[k + 2], scales[k + 3]
        s4, s5, s6, s7 = scales[k + 4], scales[k + 5], scales[k + 6], scales[k + 7]
        r0, r1, r2, r3 = src[rows[k]], src[rows[k + 1]], src[rows[k + 2]], src[rows[k + 3]]
        r4, r5, r6, r7 = src[rows[k + 4]], src[rows[k + 5]], src[rows[k + 6]], src[rows[k + 7]]
        for j in range(units):
            o[j] = ((((((((o[j] + s0 * r0[j]) + s1 * r1[j]) + s2 * r2[j]) + s3 * r3[j]) + s4 * r4[j])
                     + s5 * r5[j]) + s6 * r6[j]) + s7 * r7[j])
        k += 8
    while k < end:
        s0, r0 = scales[k], src[rows[k]]
        for j in range(units):
            o[j] += s0 * r0[j]
        k += 1


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
        _add_scaled_rows(o, w, indices, values, indptr[r], indptr[r + 1])


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
        _add_scaled_rows(o, dy, brow, bval, colptr[c], colptr[c + 1])

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
