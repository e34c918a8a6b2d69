"""The CUDA GEMMs (nnctl/engine/cuda/blas.py) under the simulator: the small-shape Numba kernels against NumPy,
and the cuBLAS calls' arguments (the row-major ↔ column-major swap) against a NumPy column-major GEMM put in
place of cuBLAS (the simulator has no device pointers). Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine.cuda import blas

RNG = np.random.default_rng(8)
SHAPES = [(5, 3, 4), (1, 7, 2), (6, 1, 9)]  # (m, k, n)


def _operands(kind, m, k, n):
    """(a, b, out, expected) for gemm (a @ b), gemm_tn (aᵀ @ b) or gemm_nt (a @ bᵀ), out being (m, n)."""
    left, right = RNG.standard_normal((m, k)).astype(np.float32), RNG.standard_normal((k, n)).astype(np.float32)
    a = {"gemm": left, "gemm_tn": np.ascontiguousarray(left.T), "gemm_nt": left}[kind]
    b = {"gemm": right, "gemm_tn": right, "gemm_nt": np.ascontiguousarray(right.T)}[kind]
    return a, b, np.zeros((m, n), np.float32), left.astype(np.float64) @ right


def _column_major(trans_first, trans_second, m, n, k, first, ld_first, second, ld_second, out, ld_out):
    """BLAS gemm on the arrays' memory read column-major with the leading dimensions given."""
    def matrix(array, rows, cols, ld):
        return array.reshape(-1)[:ld * cols].reshape(cols, ld).T[:rows, :cols]

    op_a = matrix(first, k, m, ld_first).T if trans_first else matrix(first, m, k, ld_first)
    op_b = matrix(second, n, k, ld_second).T if trans_second else matrix(second, k, n, ld_second)
    matrix(out, m, n, ld_out)[...] = op_a.astype(np.float64) @ op_b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["gemm", "gemm_tn", "gemm_nt"])
@pytest.mark.parametrize("route", ["numba", "cublas-arguments"])
def test_each_gemm_matches_numpy(kind, shape, route, monkeypatch):
    if route == "cublas-arguments":
        monkeypatch.setattr(blas, "_small", lambda *dims: False)
        monkeypatch.setattr(blas, "_column_major_gemm", _column_major)
    a, b, out, expected = _operands(kind, *shape)
    getattr(blas, kind)(a, b, out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(blas.SIMULATED, reason="cuBLAS itself needs a real GPU (NNCTL_CUDA_TESTS=gpu)")
@pytest.mark.parametrize("kind", ["gemm", "gemm_tn", "gemm_nt"])
def test_cublas_on_device_arrays(kind):
    from numba import cuda

    a, b, out, expected = _operands(kind, 70, 90, 110)  # 693,000 multiply-adds: above the Numba kernels' range
    d_out = cuda.to_device(out)
    getattr(blas, kind)(cuda.to_device(a), cuda.to_device(b), d_out)
    np.testing.assert_allclose(d_out.copy_to_host(), expected, rtol=1e-4, atol=1e-4)


def test_the_handle_takes_our_workspace_again_after_each_stream_switch(monkeypatch):
    """cublasSetStream puts a handle back on cuBLAS's own workspace pool, which allocates: a GEMM recorded into a
    CUDA graph would then allocate during the recording. After every switch (to the recording stream and back)
    the handle gets our workspace again; no call while the stream stays."""
    from nnctl.engine.cuda import launch

    calls = []

    class Bindings:
        def set_stream(self, handle, stream):
            calls.append(("set_stream", handle, stream))

        def set_workspace(self, handle, pointer, size):
            calls.append(("set_workspace", handle, pointer, size))

    class Workspace:
        __cuda_array_interface__ = {"data": (4096, False)}

    class Recording:
        handle = 77

    monkeypatch.setattr(blas, "_STATE", {"module": Bindings(), "handle": 5, "scalars": {}, "workspace": Workspace(),
                                         "stream": None})
    monkeypatch.setattr(launch, "STREAM", [0])
    monkeypatch.setattr(blas, "STREAM", launch.STREAM)
    blas._cublas()
    blas._cublas()
    launch.STREAM[0] = Recording()
    blas._cublas()
    launch.STREAM[0] = 0
    blas._cublas()
    workspace = ("set_workspace", 5, 4096, blas.WORKSPACE_BYTES)
    assert calls == [("set_stream", 5, 0), workspace, ("set_stream", 5, 77), workspace, ("set_stream", 5, 0),
                     workspace]
