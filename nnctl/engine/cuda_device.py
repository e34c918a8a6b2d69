"""Whether `device: cuda` can run here, and why not. Imports nothing of the CUDA stack when the extra is absent
and never raises: the config resolver turns the reason into a located error, and `device: auto` into the CPU.
(Kept outside nnctl/engine/cuda/, whose import compiles-in every kernel module.)"""

from __future__ import annotations

import importlib.util
import os

INSTALL = "pip install 'nnctl[cuda]'"


def problem() -> str | None:
    """None when a CUDA GPU can run nnctl's kernels (or Numba's CUDA simulator is on), else what is missing."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    if importlib.util.find_spec("numba_cuda") is None:
        return f"the `cuda` extra is not installed (numba-cuda; {INSTALL})"
    if importlib.util.find_spec("nvmath") is None:
        return f"cuBLAS is not installed (nvmath-python and nvidia-cublas-cu12; {INSTALL})"
    from numba import cuda

    try:
        if cuda.is_available() and len(cuda.gpus) > 0:
            return None
        len(cuda.gpus)  # raises with the driver's reason when there is no driver
    except Exception as error:  # noqa: BLE001 - the driver's reason, whatever its type, is what the user needs
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip(" :"))
        return f"no usable CUDA GPU ({reason})"
    return "no usable CUDA GPU (the driver found no device)"
