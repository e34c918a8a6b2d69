"""Sparse-input kernels: CSR rows × dense weights and its transpose, without densifying a batch.

A batch is a list of row numbers into one immutable CSR matrix, so shuffling never copies the data.
The inner loops run in vector blocks of 16 columns (nnctl/engine/cpu/simd.py): a block of an output row
stays in registers while all of its non-zeros are added, with fused multiply-adds. The weight gradient's
two forms (scatter for narrow layers, gather for wide ones) add in the same order, so give the same bytes.
"""

from numba import njit, prange

from nnctl.engine.cpu.simd import (
    LANES,
    gather_row,
    gather_row_in_order,
    scatter_16,
    scatter_masked,
)
from nnctl.engine.denormals import flush_bits, swap_flush_bits
from nnctl.engine.settings import KERNEL, PARALLEL_KERNEL


@njit(**KERNEL)
def csr_matmul(indptr, indices, values, rows, w, out):
    """out = X[rows] @ w with X in CSR form. indptr: (N+1,), indices/values: (nnz,), rows: (m,),
    w: (d, units), out: (m, units).

        for b: out[b, :] = sum over k in row rows[b] of values[k] * w[indices[k], :]
    """
    for b in range(rows.shape[0]):
        r = rows[b]
        gather_row(w, indices, values, indptr[r], indptr[r + 1], out, b)


@njit(**KERNEL)
def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """dw = X[rows]ᵀ @ dy (the first layer's weight gradient). dy: (m, units), dw: (d, units) overwritten.

        dw = 0; for b, k in row rows[b]: dw[indices[k], :] += values[k] * dy[b, :]

    A scatter: right for narrow layers (IMDB's 16 units). Wide ones use csr_transpose_rows + csc_t_matmul.
    """
    units = dy.shape[1]
    for c in range(dw.shape[0]):
        for j in range(units):
            dw[c, j] = 0.0
    for b in range(rows.shape[0]):
        r = rows[b]
        col = 0
        while col + LANES <= units:
            scatter_16(dy, b, col, indices, values, indptr[r], indptr[r + 1], dw, LANES)
            col += LANES
        if col < units:  # the last units % 16 columns
            scatter_masked(dy, b, col, indices, values, indptr[r], indptr[r + 1], dw, units - col)


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
    for c in range(c0, c1):
        gather_row_in_order(dy, brow, bval, colptr[c], colptr[c + 1], dw, c)

@njit(**PARALLEL_KERNEL)
def csr_matmul_split(indptr, indices, values, rows, w, out, parts):
    """csr_matmul with the batch rows cut into `parts` contiguous ranges, one per thread."""
    m, bits = rows.shape[0], flush_bits()
    for part in prange(parts):
        old = swap_flush_bits(bits)  # each thread computes under the caller's denormal mode (denormals.py)
        lo, hi = part * m // parts, (part + 1) * m // parts
        csr_matmul(indptr, indices, values, rows[lo:hi], w, out[lo:hi])
        swap_flush_bits(old)


@njit(**PARALLEL_KERNEL)
def csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds):
    """csc_t_matmul over the column ranges bounds[i]..bounds[i+1]-1, one per thread."""
    bits = flush_bits()
    for part in prange(bounds.shape[0] - 1):
        old = swap_flush_bits(bits)
        csc_t_matmul(colptr, brow, bval, dy, dw, bounds[part], bounds[part + 1])
        swap_flush_bits(old)
