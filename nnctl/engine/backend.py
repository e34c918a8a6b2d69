"""The backend object layers call: kernels by name plus allocation and GEMM dispatch for one device.

Layers never import Numba or a kernel module; `get_backend("cuda")` will be one more module with the
same kernel names (DESIGN.md, Engine).
"""

from __future__ import annotations

import importlib

import numpy as np

from nnctl.engine import settings, threads
from nnctl.errors import UnknownNameError

_MODULES = {"cpu": "nnctl.engine.cpu"}
_CACHE: dict[str, "Backend"] = {}


class Backend:
    """Kernels of one device as attributes (`backend.bias_act_forward(...)`), plus array helpers."""

    def __init__(self, name: str, module):
        self.name = name
        self._buffers: dict[str, np.ndarray] = {}
        for kernel in module.KERNELS:
            setattr(self, kernel, getattr(module, kernel))

    # GEMMs: BLAS for real work, a Numba loop where BLAS's dispatch would cost more than the arithmetic.
    def gemm(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out = a @ b. a: (m, k), b: (k, n)."""
        if a.shape[0] * a.shape[1] * b.shape[1] < settings.SMALL_GEMM_MACS:
            self.matmul(a, b, out)
        else:
            np.matmul(a, b, out=out)

    def gemm_tn(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out = aᵀ @ b. a: (m, k), b: (m, n)."""
        if a.shape[0] * a.shape[1] * b.shape[1] < settings.SMALL_GEMM_MACS:
            self.matmul_tn(a, b, out)
        else:
            np.matmul(a.T, b, out=out)

    def gemm_nt(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out = a @ bᵀ. a: (m, n), b: (k, n)."""
        if a.shape[0] * a.shape[1] * b.shape[0] < settings.SMALL_GEMM_MACS:
            self.matmul_nt(a, b, out)
        else:
            np.matmul(a, b.T, out=out)

    def gemm_batched(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out[e] = a[e] @ b[e] for every e. a: (k, m, p), b: (k, p, n)."""
        np.matmul(a, b, out=out)

    # CSR input through the first Dense layer; calls big enough to pay for it are split over threads.
    def csr_forward(self, x, w: np.ndarray, out: np.ndarray) -> None:
        """out = x @ w for a CSRBatch x; a big batch is cut into row ranges, one per thread."""
        m, rows = x.matrix, x.rows
        parts = threads.parts(len(rows) * m.nnz // max(1, m.shape[0]) * w.shape[1])
        if parts == 1:
            self.csr_matmul(m.indptr, m.indices, m.values, rows, w, out)
        else:
            self.csr_matmul_split(m.indptr, m.indices, m.values, rows, w, out, parts)

    def csr_weight_grad(self, x, dy: np.ndarray, dw: np.ndarray) -> None:
        """dw = xᵀ @ dy for a CSRBatch x. Narrow layers scatter; wide ones transpose the batch and write each
        dw row once, a big one in column ranges of equal non-zero counts, one per thread (same bytes)."""
        m, rows = x.matrix, x.rows
        if dy.shape[1] < settings.CSC_MIN_UNITS:
            self.csr_t_matmul(m.indptr, m.indices, m.values, rows, dy, dw)
            return
        nnz = int((m.indptr[rows + 1] - m.indptr[rows]).sum())
        colptr = self._scratch("colptr", dw.shape[0] + 1, np.int64)
        brow, bval = self._scratch("brow", nnz, np.int32), self._scratch("bval", nnz, np.float32)
        self.csr_transpose_rows(m.indptr, m.indices, m.values, rows, colptr, brow, bval)
        parts = threads.parts(nnz * dy.shape[1])
        if parts == 1:
            self.csc_t_matmul(colptr, brow, bval, dy, dw, 0, dw.shape[0])
            return
        bounds = np.searchsorted(colptr[:dw.shape[0] + 1], np.arange(parts + 1) * nnz // parts)
        bounds[0], bounds[-1] = 0, dw.shape[0]
        self.csc_t_matmul_split(colptr, brow, bval, dy, dw, bounds)

    def _scratch(self, key: str, size: int, dtype) -> np.ndarray:
        """A reusable buffer of at least `size` elements (grows, never shrinks). The training loop is the
        only caller, one call at a time."""
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < size:
            buf = self._buffers[key] = np.empty(max(size, 1), dtype)
        return buf

    @staticmethod
    def empty(shape) -> np.ndarray:
        return np.empty(shape, dtype=np.float32)

    @staticmethod
    def zeros(shape) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)


def get_backend(name: str = "cpu") -> Backend:
    """The backend for `name` ('cpu'); the kernel module is imported on first use only."""
    if name not in _MODULES:
        raise UnknownNameError("device", name, list(_MODULES))
    if name not in _CACHE:
        module = importlib.import_module(_MODULES[name])
        module.prepare()
        _CACHE[name] = Backend(name, module)
    return _CACHE[name]
