"""Compiles the kernel launches the simulator run recorded (tests/engine/cuda_sim/conftest.py) for a real GPU,
sm_90, with numba-cuda's `cuda.compile_ptx`, each with the launch bound it declares (launch.wide): NVVM from the
cu12 wheels, no GPU or driver needed. Typing and lowering errors the simulator cannot see (it runs the kernels as
Python) fail here.

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


def main(path: str) -> int:
    from numba.cuda import dispatcher

    dispatcher.get_current_device = _SM90  # device functions compile for sm_90, not for the (absent) GPU
    record = json.load(open(path))
    failures, start = [], time.perf_counter()
    for module, name, specs in record["launches"]:
        kernel = getattr(importlib.import_module(module), name)
        signature = tuple(_numba_type(spec) for spec in specs)
        try:
            bound = kernel.targetoptions.get("launch_bounds")
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0), launch_bounds=bound)
            assert ".target sm_90" in ptx
            assert bound is None or re.search(rf"\.maxntid {bound}\b", ptx), f"no .maxntid {bound} in the PTX"
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the run fails
            failures.append(f"{module}.{name}{signature}: {type(error).__name__}: {error}")
    print(f"compiled {len(record['launches']) - len(failures)} of {len(record['launches'])} launches for sm_90 "
          f"in {time.perf_counter() - start:.1f} s")
    print("\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
