"""With NNCTL_CUDA_LAUNCHES set (tests/engine/test_cuda_sim.py sets it), the simulator run records every kernel
launch's argument types, and every kernel nnctl.engine.cuda defines, into that JSON file: the launches are then
compiled for a real GPU with `cuda.compile_ptx` (tests/engine/cuda_compile.py), which types the kernels as the
simulator never does, and a kernel no test launched fails the check (nnctl's kernels: the tests' own are not
recorded). Under the simulator, its thread blocks run on pooled threads (fast_blocks.py)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

_PATH = os.environ.get("NNCTL_CUDA_LAUNCHES")
# These tests run in a process of their own under the simulator (tests/engine/test_cuda_sim.py starts it: the
# simulator is chosen when Numba starts), or on a real GPU with NNCTL_CUDA_TESTS=gpu (bench/gpu_check.sh).
_RUN = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("NNCTL_CUDA_TESTS") == "gpu"


def pytest_ignore_collect(collection_path, config):
    """Elsewhere (the main test run) the files here are not collected at all."""
    return True if not _RUN and collection_path.name.startswith("test_") else None


def pytest_configure(config):
    # The simulator runs kernels on NumPy scalars, which warn where a GPU's uint64 arithmetic wraps by design
    # (the counter-based dropout generator).
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered in scalar:RuntimeWarning")
_LAUNCHES: set = set()

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from tests.engine.cuda_sim import fast_blocks

    fast_blocks.install()  # the simulator's blocks on pooled threads, without its busy-waiting manager


def _type_of(arg):
    """("A", dtype, ndim, layout) for an array, ("T", (its items' types)) for a tuple (shapes, strides; a layer's
    arrays), ("S", dtype) for a scalar: what numba's typeof would say."""
    arg = getattr(arg, "_ary", arg)  # a simulator device array
    if isinstance(arg, np.ndarray):
        layout = "C" if arg.flags.c_contiguous else "F" if arg.flags.f_contiguous else "A"
        return ("A", arg.dtype.str, arg.ndim, layout)
    if isinstance(arg, tuple):
        return ("T", tuple(_type_of(item) for item in arg))
    return ("S", np.asarray(arg).dtype.str)


if _PATH and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from numba.cuda.simulator import kernel as _sim

    _launch = _sim.FakeCUDAKernel.__call__

    def _recording_launch(self, *args):
        if not self._device and not _sim._kernel_context and self.fn.__module__.startswith("nnctl."):
            _LAUNCHES.add((self.fn.__module__, self.fn.__name__, tuple(_type_of(arg) for arg in args)))
        return _launch(self, *args)

    _sim.FakeCUDAKernel.__call__ = _recording_launch

    def pytest_sessionfinish(session, exitstatus):
        from nnctl.engine import cuda

        kernels = sorted((module.__name__, name) for module in cuda.MODULES for name, value in vars(module).items()
                         if isinstance(value, _sim.FakeCUDAKernel) and not value._device)
        with open(_PATH, "w") as out:
            json.dump({"kernels": kernels, "launches": sorted(_LAUNCHES)}, out)


@pytest.fixture
def strict_device_arrays(monkeypatch):
    """Simulator device arrays as strict as a GPU's: no NumPy conversion or host arithmetic (the simulator's
    arrays allow both, so a runner that touched its device data on the host would pass here and fail on a GPU).
    A no-op on a real GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return
    from numba.cuda.simulator.cudadrv import devicearray

    fake = devicearray.FakeCUDAArray
    permitted = {"dtype", "size", "ndim", "strides", "itemsize", "nbytes", "flags", "__cuda_array_interface__"}
    forward = fake.__getattr__

    def from_simulator() -> bool:  # the simulator's own copies and checks use the wrapped array freely
        return sys._getframe(2).f_globals.get("__name__", "").startswith(("numba.cuda", "numpy"))

    def strict_getattr(self, name):
        if name not in permitted and not from_simulator():
            raise AssertionError(f"host access to a device array: .{name}")
        return forward(self, name)

    def refuse(self, *args):
        raise AssertionError("host arithmetic on a device array")

    monkeypatch.setattr(fake, "__getattr__", strict_getattr)
    for name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__sub__", "__mul__",
                 "__floordiv__", "__truediv__", "__mod__", "__pow__", "__neg__", "__abs__", "__iter__"):
        if hasattr(fake, name):
            monkeypatch.setattr(fake, name, refuse)
