"""CUDA twins of nnctl/engine/cpu/sparse.py: the sparse (CSR) text input through the first Dense layer.

Every output element is one thread adding its non-zeros in row (or batch-row) order, the CPU kernels' order,
so no atomics and no order that depends on scheduling. The `_split` variants take the CPU's extra argument
and compute the same result in one launch (the GPU splits by itself).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, grid1, grid2


@cuda.jit(**KERNEL)
def _csr_matmul(indptr, indices, values, rows, w, out):
    b, j = cuda.grid(2)
    if b < out.shape[0] and j < out.shape[1]:
        r = rows[b]
        total = np.float32(0.0)
        for k in range(indptr[r], indptr[r + 1]):
            total += values[k] * w[indices[k], j]
        out[b, j] = total


def csr_matmul(indptr, indices, values, rows, w, out):
    """out = X[rows] @ w, X in CSR form. w: (d, units), out: (m, units)."""
    _csr_matmul[grid2(*out.shape)](indptr, indices, values, rows, w, out)


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


def csr_t_matmul(indptr, indices, values, rows, dy, dw):
    """dw = X[rows]ᵀ @ dy (overwritten). dy: (m, units), dw: (d, units)."""
    units = dw.shape[1]
    _csr_t_matmul[grid1(units)](indptr, indices, values, rows, dy, dw)


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
    _transpose_rows[1, 1](indptr, indices, values, rows, colptr, brow, bval, count)
    return int(count.copy_to_host()[0]) if hasattr(count, "copy_to_host") else int(count[0])


@cuda.jit(**KERNEL)
def _csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    c, j = cuda.grid(2)
    c += c0
    if c < c1 and j < dw.shape[1]:
        total = np.float32(0.0)
        for p in range(colptr[c], colptr[c + 1]):
            total += bval[p] * dy[brow[p], j]
        dw[c, j] = total


def csc_t_matmul(colptr, brow, bval, dy, dw, c0, c1):
    """Rows c0..c1-1 of dw = X[rows]ᵀ @ dy from the batch in CSC form."""
    if c1 > c0:
        _csc_t_matmul[grid2(c1 - c0, dw.shape[1])](colptr, brow, bval, dy, dw, c0, c1)


def csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds):
    host = bounds.copy_to_host() if hasattr(bounds, "copy_to_host") else np.asarray(bounds)
    csc_t_matmul(colptr, brow, bval, dy, dw, int(host[0]), int(host[-1]))


KERNELS = ("csr_matmul", "csr_t_matmul", "csr_transpose_rows", "csc_t_matmul", "csr_matmul_split",
           "csc_t_matmul_split")
