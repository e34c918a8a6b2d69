"""With NNCTL_CUDA_LAUNCHES set (tests/engine/test_cuda_sim.py sets it), the simulator run records every kernel
launch's argument types, and every kernel nnctl.engine.cuda defines, into that JSON file: the launches are then
compiled for a real GPU with `cuda.compile_ptx` (tests/engine/cuda_compile.py), which types the kernels as the
simulator never does, and a kernel no test launched fails the check."""

from __future__ import annotations

import json
import os

import numpy as np

_PATH = os.environ.get("NNCTL_CUDA_LAUNCHES")


def pytest_configure(config):
    # The simulator runs kernels on NumPy scalars, which warn where a GPU's uint64 arithmetic wraps by design
    # (the counter-based dropout generator).
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered in scalar:RuntimeWarning")
_LAUNCHES: set = set()


def _type_of(arg):
    """("A", dtype, ndim, layout) for an array, ("S", dtype) for a scalar: what numba's typeof would say."""
    arg = getattr(arg, "_ary", arg)  # a simulator device array
    if isinstance(arg, np.ndarray):
        layout = "C" if arg.flags.c_contiguous else "F" if arg.flags.f_contiguous else "A"
        return ("A", arg.dtype.str, arg.ndim, layout)
    return ("S", np.asarray(arg).dtype.str)


if _PATH and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from numba.cuda.simulator import kernel as _sim

    _launch = _sim.FakeCUDAKernel.__call__

    def _recording_launch(self, *args):
        if not self._device and not _sim._kernel_context:
            _LAUNCHES.add((self.fn.__module__, self.fn.__name__, tuple(_type_of(arg) for arg in args)))
        return _launch(self, *args)

    _sim.FakeCUDAKernel.__call__ = _recording_launch

    def pytest_sessionfinish(session, exitstatus):
        from nnctl.engine import cuda

        kernels = sorted((module.__name__, name) for module in cuda.MODULES for name, value in vars(module).items()
                         if isinstance(value, _sim.FakeCUDAKernel) and not value._device)
        with open(_PATH, "w") as out:
            json.dump({"kernels": kernels, "launches": sorted(_LAUNCHES)}, out)
