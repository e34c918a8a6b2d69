"""The backend object layers call: kernels by name plus allocation and GEMM dispatch for one device.

Layers never import Numba or a kernel module; `get_backend("cuda")` will be one more module with the
same kernel names (DESIGN.md, Engine).
"""

from __future__ import annotations

import importlib

import numpy as np

from nnctl.engine import settings
from nnctl.errors import UnknownNameError

_MODULES = {"cpu": "nnctl.engine.cpu"}
_CACHE: dict[str, "Backend"] = {}


class Backend:
    """Kernels of one device as attributes (`backend.bias_act_forward(...)`), plus array helpers."""

    def __init__(self, name: str, module):
        self.name = name
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
        _CACHE[name] = Backend(name, importlib.import_module(_MODULES[name]))
    return _CACHE[name]
