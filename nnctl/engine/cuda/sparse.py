"""CUDA twins of nnctl/engine/cpu/sparse.py: the sparse (CSR) text input through the first Dense layer.

Every output element is one thread adding its non-zeros in row (or batch-row) order, the CPU kernels' order,
so no atomics and no order that depends on scheduling. The `_split` variants take the CPU's extra argument
and compute the same result in one launch (the GPU splits by itself).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda import sorting
from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, scratch


@cuda.jit(**KERNEL)
def _csr_matmul(indptr, indices, values, rows, w, out):
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for b in range(row0, out.shape[0], row_step):
            r = rows[b]
            total = np.float32(0.0)
            for k in range(indptr[r], indptr[r + 1]):
                total += values[k] * w[indices[k], j]
            out[b, j] = total


def csr_matmul(indptr, indices, values, rows, w, out):
    """out = X[rows] @ w, X in CSR form. w: (d, units), out: (m, units)."""
    _csr_matmul[on(*grid2(*out.shape))](indptr, indices, values, rows, w, out)


def csr_matmul_split(indptr, indices, values, rows, w, out, parts):
    csr_matmul(indptr, indices, values, rows, w, out)


@cuda.jit(**KERNEL)
def _csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """One thread per unit j: zero column j of dw, then add each non-zero's product in batch order."""
    j = cuda.grid(1)
    if j < dw.shape[1]:
        for c in range(dw.shape[0]):
            dw[c, j] = 0.0
        for b in range(rows.shape[0]):
            r = rows[b]
            for k in range(indptr[r], indptr[r + 1]):
                dw[indices[k], j] += values[k] * dy[b, j]


# csr_t_matmul in parallel: each column's non-zeros in batch order, as a counting sort whose chunks are the batch's
# rows (a row holds a column once): presence[b, c] = 1 where row b has column c; one thread a column turns its
# column of presence into offsets (rows before b holding c); one thread ranks the columns; one thread a row
# places its non-zeros; one thread a (column, unit) adds its non-zeros' products in batch order, from 0 — the
# additions of the one-thread-a-unit walk (and of the CPU's scatter), so the walk's bytes. A row holds a column
# once (CSRMatrix's rows are a dense row's non-zeros). The presence matrix is m × d int32: beyond _PRESENCE
# entries the kernel keeps the walk.
_PRESENCE = 1 << 24


@cuda.jit(**KERNEL)
def _mark_columns(indptr, indices, rows, presence):
    b = cuda.grid(1)
    if b < rows.shape[0]:
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            presence[b, indices[k]] = 1


@cuda.jit(**KERNEL)
def _place_nonzeros(indptr, indices, values, rows, presence, starts, brow, bval):
    b = cuda.grid(1)
    if b < rows.shape[0]:
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            p = starts[indices[k]] + presence[b, indices[k]]
            brow[p] = b
            bval[p] = values[k]


@cuda.jit(**KERNEL)
def _column_products(starts, brow, bval, dy, dw):
    j, row0, row_step = cells()
    if j < dw.shape[1]:
        for c in range(row0, dw.shape[0], row_step):
            total = np.float32(0.0)
            for p in range(starts[c], starts[c + 1]):
                total += bval[p] * dy[brow[p], j]
            dw[c, j] = total


def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """dw = X[rows]ᵀ @ dy (overwritten). dy: (m, units), dw: (d, units)."""
    m, d = rows.shape[0], dw.shape[0]
    if m * d > _PRESENCE:
        _csr_t_matmul[on(*grid1(dw.shape[1]))](indptr, indices, values, rows, dy, dw)
        return
    presence = scratch("csr presence", m * d, np.int32)
    sorting.zero_ints[on(*grid1(m * d))](presence)
    presence = presence.reshape(m, d)
    totals, starts = scratch("csr column totals", d, np.int32), scratch("csr column starts", d + 1, np.int32)
    bound = max(1, indices.shape[0])  # the dataset's non-zeros: room for any batch's, read without a wait
    brow, bval = scratch("csr batch rows", bound, np.int32), scratch("csr batch values", bound, np.float32)
    _mark_columns[on(*grid1(m))](indptr, indices, rows, presence)
    sorting.key_offsets(presence, totals)
    sorting.key_starts(totals, starts)
    _place_nonzeros[on(*grid1(m))](indptr, indices, values, rows, presence, starts, brow, bval)
    _column_products[on(*grid2(d, dw.shape[1]))](starts, brow, bval, dy, dw)


@cuda.jit(**KERNEL)
def _transpose_rows(indptr, indices, values, rows, colptr, brow, bval, count):
    """The CPU's stable counting sort, as one thread (the batch's CSC form)."""
    if cuda.grid(1) != 0:
        return
    d = colptr.shape[0] - 1
    for c in range(d + 1):
        colptr[c] = 0
    for b in range(rows.shape[0]):
        r = rows[b]
        for k in range(indptr[r], indptr[r + 1]):
            colptr[indices[k] + 1] += 1
    for c in range(d):
        colptr[c + 1] += colptr[c]
    for b in range(rows.shape[0]):
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
    count[0] = colptr[d]


def csr_transpose_rows(indptr, indices, values, rows, colptr, brow, bval):
    """The batch X[rows] in CSC form (colptr, brow, bval); returns its non-zero count."""
    count = cuda.device_array(1, np.int64)
    _transpose_rows[on(1, 1)](indptr, indices, values, rows, colptr, brow, bval, count)
    return int(count.copy_to_host()[0]) if hasattr(count, "copy_to_host") else int(count[0])


@cuda.jit(**KERNEL)
def _csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    j, row0, row_step = cells()
    if j < dw.shape[1]:
        for c in range(c0 + row0, c1, row_step):
            total = np.float32(0.0)
            for p in range(colptr[c], colptr[c + 1]):
                total += bval[p] * dy[brow[p], j]
            dw[c, j] = total


def csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    """Rows c0..c1-1 of dw = X[rows]ᵀ @ dy from the batch in CSC form."""
    if c1 > c0:
        _csc_t_matmul[on(*grid2(c1 - c0, dw.shape[1]))](colptr, brow, bval, dy, dw, c0, c1)


def csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds):
    host = bounds.copy_to_host() if hasattr(bounds, "copy_to_host") else np.asarray(bounds)
    csc_t_matmul(colptr, brow, bval, dy, dw, int(host[0]), int(host[-1]))


KERNELS = ("csr_matmul", "csr_t_matmul", "csr_transpose_rows", "csc_t_matmul", "csr_matmul_split",
           "csc_t_matmul_split")
