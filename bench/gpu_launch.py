"""What one launch costs on this GPU stack, for issue #20's launch-bound steps: a 5-array kernel (as a dense
layer's bias + activation) launched N times through (1) Numba's dispatcher, `kernel[grid, block](…)`, as nnctl
launches today; (2) the compiled kernel's own `launch`, the argument types already resolved; (3) cuda.core's
`launch` on arguments packed once; (4) the driver's cuLaunchKernel on a parameter buffer packed once (what a
replayed step could cost); and, beside them, a cuBLAS sgemm of a small layer (128 × 512 × 10) through
nvmath-python and a small PyTorch op. Microseconds per call, the device synchronized before and after.

    python bench/gpu_launch.py [--calls 5000]
"""

from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np


def per_call(run, calls: int) -> float:
    from numba import cuda

    run()
    cuda.synchronize()
    began = time.perf_counter()
    for _ in range(calls):
        run()
    cuda.synchronize()
    return 1e6 * (time.perf_counter() - began) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    from numba import cuda

    @cuda.jit
    def bias_act(x, bias, out, mask, scale):
        i = cuda.grid(1)
        if i < out.shape[0]:
            for j in range(out.shape[1]):
                v = x[i, j] + bias[j]
                out[i, j] = v if v > 0 else 0.0
                mask[i, j] = scale[0] * (v > 0)

    x, out, mask = (cuda.device_array((128, 10), np.float32) for _ in range(3))
    bias, scale = cuda.to_device(np.zeros(10, np.float32)), cuda.to_device(np.ones(1, np.float32))
    arrays = (x, bias, out, mask, scale)
    grid, block = 1, 128
    rows = []

    def row(label, run):
        try:
            rows.append((label, f"{per_call(run, args.calls):8.1f} µs"))
        except Exception as error:  # noqa: BLE001 - a variant this stack lacks is reported, the others still run
            rows.append((label, f"failed: {type(error).__name__}: {str(error)[:160]}"))

    row("numba dispatcher kernel[g, b](…)", lambda: bias_act[grid, block](*arrays))
    kernel = next(iter(bias_act.overloads.values()))
    row("compiled kernel .launch(…)", lambda: kernel.launch(arrays, (grid, 1, 1), (block, 1, 1), 0, 0))
    packed: list = []
    for ty, value in zip(kernel.argument_types, arrays):
        kernel._prepare_args(ty, value, 0, [], packed)
    cufunc = kernel._codelibrary.get_cufunc()
    try:
        from cuda.core import LaunchConfig, launch

        from numba.cuda.cudadrv import driver

        config = LaunchConfig(grid=(grid, 1, 1), block=(block, 1, 1), shmem_size=0)
        stream = driver._to_core_stream(0)
        row("cuda.core launch, args packed once", lambda: launch(stream, config, cufunc.kernel, *packed))
    except Exception as error:  # noqa: BLE001
        rows.append(("cuda.core launch, args packed once", f"failed: {type(error).__name__}: {error}"))
    try:
        from cuda.bindings import driver as cu

        values = [v if isinstance(v, ctypes._SimpleCData) else ctypes.c_ssize_t(int(v)) for v in packed]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        handle = getattr(cufunc, "handle", None) or cufunc.kernel._handle
        row("cuLaunchKernel, buffer packed once",
            lambda: cu.cuLaunchKernel(handle, grid, 1, 1, block, 1, 1, 0, 0, ctypes.addressof(params), 0))
    except Exception as error:  # noqa: BLE001
        rows.append(("cuLaunchKernel, buffer packed once", f"failed: {type(error).__name__}: {error}"))
    try:
        from nnctl.engine.cuda import blas

        a, b, c = (cuda.device_array(shape, np.float32) for shape in ((128, 512), (512, 10), (128, 10)))
        row("cuBLAS sgemm 128×512×10 (nvmath)", lambda: blas._column_major_gemm(0, 0, 10, 128, 512, b, 10, a, 512,
                                                                                c, 10))
    except Exception as error:  # noqa: BLE001
        rows.append(("cuBLAS sgemm", f"failed: {type(error).__name__}: {error}"))
    try:
        import torch

        t = torch.zeros((128, 10), device="cuda")
        row("torch: t.add_(1.0) on 128×10", lambda: t.add_(1.0))
    except Exception as error:  # noqa: BLE001
        rows.append(("torch op", f"failed: {type(error).__name__}: {error}"))
    print(f"one launch, {args.calls} calls each:")
    for label, figure in rows:
        print(f"  {label:38s} {figure}")


if __name__ == "__main__":
    main()
