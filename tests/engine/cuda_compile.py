"""Compiles the kernel launches the simulator run recorded (tests/engine/cuda_sim/conftest.py) for a real GPU,
sm_90, with numba-cuda's `cuda.compile_ptx`, each with the launch bound it declares (launch.wide): NVVM from the
cu12 wheels, no GPU or driver needed. Typing and lowering errors the simulator cannot see (it runs the kernels as
Python) fail here. Each launch's PTX is then linked into an sm_90 cubin as numba-cuda links it on a GPU
(nvJitLink through cuda.core's Linker, which needs no driver), with the device runtime (`libcudadevrt.a`, found by
numba-cuda's own lookup) where the kernel calls into it — a cooperative grid's barrier: the assembler's errors and an
unresolved call fail here too. A launch whose parameters take more than PARAM_LIMIT bytes fails as well (numba passes
an array as its pointer, shape and strides, so a kernel taking tuples of a model's arrays grows with the model).

    python tests/engine/cuda_compile.py LAUNCHES.json     # exit 1 and the errors when a launch fails to compile
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import time

import numpy as np
from numba import cuda, from_dtype, types

# A kernel's parameters: at most 4,096 bytes before CUDA 12.1 and on GPUs before Volta (32,764 since); nnctl keeps
# within the older limit, so that a driver of CUDA 12.0 runs every launch.
PARAM_LIMIT = 4096
_ENTRY = re.compile(r"\.entry\s+[\w$]+\s*\((.*?)\)", re.S)
_PARAM = re.compile(r"\.param\s+(?:\.align\s+(\d+)\s+)?\.[bfsu](\d+)\s+[\w$]+(?:\[(\d+)\])?")


def param_bytes(ptx: str) -> int:
    """The bytes of a kernel's parameters, from its PTX entry's list (each parameter at its alignment)."""
    total = 0
    for align, bits, count in _PARAM.findall(_ENTRY.search(ptx).group(1)):
        size = int(bits) // 8
        step = int(align or size)
        total = -(-total // step) * step + size * int(count or 1)
    return total


def _numba_type(spec):
    if spec[0] == "A":
        _, dtype, ndim, layout = spec
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)
    if spec[0] == "T":  # a tuple: numba's UniTuple when its items have one type
        items = [_numba_type(item) for item in spec[1]]
        return types.UniTuple(items[0], len(items)) if items and len(set(items)) == 1 else types.Tuple(items)
    return from_dtype(np.dtype(spec[1]))


class _SM90:
    """The device numba-cuda asks for while compiling a kernel's device functions: on a machine without a GPU
    there is none, so it is told the target the kernels are compiled for."""

    compute_capability = (9, 0)


class _Linking:
    """Links a kernel's PTX into an sm_90 cubin (the module's docstring); counts the kernels that needed the device
    runtime."""

    def __init__(self):
        from cuda.core import LinkerOptions, ObjectCode
        from numba.cuda.cudadrv.libs import get_cudalib

        with open(get_cudalib("cudadevrt", static=True), "rb") as library:
            self.runtime = ObjectCode.from_library(library.read())
        self.options, self.with_runtime = LinkerOptions(arch="sm_90"), 0

    def __call__(self, ptx: str) -> None:
        from cuda.core import Linker, ObjectCode

        codes = [ObjectCode.from_ptx(ptx.encode())]
        if ".extern .func" in ptx:  # calls into the device runtime (cudaCGSynchronize, …)
            codes.append(self.runtime)
            self.with_runtime += 1
        Linker(*codes, options=self.options).link("cubin")


def main(path: str) -> int:
    from numba.cuda import dispatcher

    dispatcher.get_current_device = _SM90  # device functions compile for sm_90, not for the (absent) GPU
    record = json.load(open(path))
    failures, start, link = [], time.perf_counter(), _Linking()
    for module, name, specs in record["launches"]:
        kernel = getattr(importlib.import_module(module), name)
        signature = tuple(_numba_type(spec) for spec in specs)
        try:
            bound = kernel.targetoptions.get("launch_bounds")
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0), launch_bounds=bound)
            assert ".target sm_90" in ptx
            assert bound is None or re.search(rf"\.maxntid {bound}\b", ptx), f"no .maxntid {bound} in the PTX"
            assert param_bytes(ptx) <= PARAM_LIMIT, f"{param_bytes(ptx)} bytes of parameters (at most {PARAM_LIMIT})"
            link(ptx)
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the run fails
            failures.append(f"{module}.{name}{signature}: {type(error).__name__}: {error}")
    print(f"compiled and linked {len(record['launches']) - len(failures)} of {len(record['launches'])} launches for "
          f"sm_90 ({link.with_runtime} with the device runtime) in {time.perf_counter() - start:.1f} s")
    print("\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
