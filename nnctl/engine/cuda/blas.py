"""GEMMs on device arrays: cuBLAS (through nvmath-python's low-level bindings, on the arrays' pointers) for real
work, the Numba `matmul` kernels of dense.py where a shape is too small to pay for a cuBLAS call, and under
NUMBA_ENABLE_CUDASIM=1 (simulator arrays have no device pointer) — the CPU backend's `gemm`, `gemm_tn` and
`gemm_nt`, same arguments.

cuBLAS is column-major and our arrays are row-major: a row-major (r, c) array is the column-major (c, r) matrix
its transpose, so out = op(a)·op(b) is computed as outᵀ = op(b)ᵀ·op(a)ᵀ with the operands swapped.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine import settings
from nnctl.engine.cuda import dense
from nnctl.engine.cuda.launch import SIMULATED, STREAM

_N, _T = 0, 1  # cublasOperation_t: CUBLAS_OP_N, CUBLAS_OP_T
# cuBLAS's workspace, ours rather than one it allocates itself, so that a GEMM recorded into a CUDA graph
# (graphs.py) allocates nothing: 32 MiB, the size NVIDIA gives for Hopper.
WORKSPACE_BYTES = 32 << 20
_STATE: dict = {}


def _cublas():
    """(bindings module, handle, {dtype: (alpha, beta) host scalars}), created on first use; the handle on the
    stream the kernels go to at the moment (launch.STREAM), so kernels and GEMMs run in one order."""
    if not _STATE:
        from numba import cuda
        from nvmath.bindings import cublas

        scalars = {np.dtype(t): (np.ones(1, t), np.zeros(1, t)) for t in (np.float32, np.float64)}
        workspace = cuda.device_array(WORKSPACE_BYTES, np.uint8)
        _STATE.update(module=cublas, handle=cublas.create(), scalars=scalars, workspace=workspace, stream=None)
    if _STATE["stream"] is not STREAM[0]:
        # cublasSetStream puts the handle back on cuBLAS's own workspace pool, which allocates (a recording
        # refuses that): our workspace again after each switch. One buffer serves both streams: a recorded
        # GEMM runs when its graph is launched, on the default stream, in order with the others.
        module, handle = _STATE["module"], _STATE["handle"]
        module.set_stream(handle, int(getattr(STREAM[0], "handle", 0)))
        module.set_workspace(handle, _pointer(_STATE["workspace"]), WORKSPACE_BYTES)
        _STATE["stream"] = STREAM[0]
    return _STATE["module"], _STATE["handle"], _STATE["scalars"]


def _pointer(array) -> int:
    return array.__cuda_array_interface__["data"][0]


def _small(m, k, n) -> bool:
    return SIMULATED or m * k * n < settings.SMALL_GEMM_MACS


def _column_major_gemm(trans_first, trans_second, m, n, k, first, ld_first, second, ld_second, out, ld_out):
    """Column-major out (m, n) = op(first)·op(second), BLAS's gemm arguments on arrays: cublas<S|D>gemm on the
    device pointers. (tests/engine/cuda_sim/test_gemm_twins.py checks the calls above against a NumPy
    column-major GEMM put in its place.)"""
    cublas, handle, scalars = _cublas()
    alpha, beta = scalars[np.dtype(out.dtype)]
    call = cublas.sgemm if out.dtype == np.float32 else cublas.dgemm
    call(handle, trans_first, trans_second, m, n, k, alpha.ctypes.data, _pointer(first), ld_first, _pointer(second),
         ld_second, beta.ctypes.data, _pointer(out), ld_out)


def gemm(a, b, out) -> None:
    """out = a @ b. a: (m, k), b: (k, n); all C-contiguous device arrays."""
    (m, k), n = a.shape, b.shape[1]
    if _small(m, k, n):
        dense.matmul(a, b, out)
    else:  # outᵀ (n, m) = bᵀ·aᵀ: b's storage is bᵀ (ld n), a's is aᵀ (ld k)
        _column_major_gemm(_N, _N, n, m, k, b, n, a, k, out, n)


def gemm_tn(a, b, out) -> None:
    """out = aᵀ @ b. a: (m, k), b: (m, n); out: (k, n)."""
    (m, k), n = a.shape, b.shape[1]
    if _small(m, k, n):
        dense.matmul_tn(a, b, out)
    else:  # outᵀ (n, k) = bᵀ·a: b's storage is bᵀ (n × m, ld n); a is the transpose of its storage (ld k)
        _column_major_gemm(_N, _T, n, k, m, b, n, a, k, out, n)


def gemm_nt(a, b, out) -> None:
    """out = a @ bᵀ. a: (m, n), b: (k, n); out: (m, k)."""
    (m, n), k = a.shape, b.shape[0]
    if _small(m, n, k):
        dense.matmul_nt(a, b, out)
    else:  # outᵀ (k, m) = b·aᵀ: b is the transpose of its storage (ld n), a's storage is aᵀ (ld n)
        _column_major_gemm(_T, _N, k, m, n, b, n, a, n, out, k)
