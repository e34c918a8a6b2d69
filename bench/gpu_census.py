"""What one training step of each of bench/gpu.py's workloads launches on `device: cuda`, read without a GPU:
under Numba's CUDA simulator with every kernel's body skipped (the host code runs as on a GPU: the same
launches, geometries and cuBLAS calls, at the workloads' real shapes), each launch of one steady step is
listed with its threads and the largest array it is handed. A kernel whose threads are far fewer than the
elements it reads (`elements / thread`) walks them in series; on a GPU each of those elements is a memory wait,
so such a launch, not the arithmetic, sets the step's time — what #20's first GPU run found in the LSTM's
bias gradient, the sort and the embedding gradient. Also counted: the device arrays a step builds by slicing or
reshaping (numba-cuda spends microseconds of Python on each). Launches have a GPU's geometry (GPU_GEOMETRY),
not the simulator's. The figures are counts, not times.

    python bench/gpu_census.py [--workloads mlp,boston,convnet,lstm,tape] [--flag 256]
    NNCTL_CUDA_FUSED=0 python bench/gpu_census.py ...    # the small models' steps without the one-launch epoch
    NNCTL_CUDA_GRAPHS=0 python bench/gpu_census.py ...   # (and not replayed as CUDA graphs: launch by launch)

Needs only the `dev` extra (numba-cuda's simulator); no GPU.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before Numba starts: the simulator is chosen when it loads

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu.py beside this file


# The launch geometry a GPU gets: the simulator's is smaller (it runs each GPU thread as an OS thread).
GPU_GEOMETRY = {"launch": {"THREADS": 128, "TILE": 16, "ROW_BLOCKS": 65535}, "columns": {"WIDTH": 32},
                "sorting": {"SCAN_THREADS": 1024, "RANK_SPAN": 256, "_SPAN": 256},
                "recurrent": {"SEQUENCE_BLOCK": 64}, "fused": {"THREADS": 512, "GRID_THREADS": 256},
                "losses": {"ONE_BLOCK": 1024}}
SMS = 132  # an H200's multiprocessors: a cooperative grid's blocks
# Launches whose blocks are wider than their kernel declares (launch.wide; DEFAULT_BOUND when it does not): a GPU
# would refuse such a launch where the kernel's registers a thread need more than a block has.
TOO_WIDE: set = set()
# Launches a GPU would refuse for their grid's or block's shape (CUDA's limits: a grid 2³¹ − 1 × 65,535 × 65,535
# blocks, a block 1,024 × 1,024 × 64 threads and 1,024 in all), which the simulator does not check.
OUT_OF_BOUNDS: set = set()
GRID_LIMITS, BLOCK_LIMITS = (2 ** 31 - 1, 65535, 65535), (1024, 1024, 64)


def past_limits(grid: tuple, block: tuple) -> bool:
    """Whether a GPU refuses a launch of this grid and block (three dimensions each) for their shape."""
    return (any(n > most for n, most in zip((*grid, *block), (*GRID_LIMITS, *BLOCK_LIMITS)))
            or int(np.prod(block)) > 1024)


def _gpu_geometry() -> None:
    import importlib

    from nnctl.nn import cudafused

    for module, values in GPU_GEOMETRY.items():
        for name, value in values.items():
            target = importlib.import_module(f"nnctl.engine.cuda.{module}")
            assert hasattr(target, name), f"{module}.{name}"
            setattr(target, name, value)
    cudafused.grid_blocks = lambda ctx: SMS


def _elements(arg) -> int:
    array = getattr(arg, "_ary", arg)
    return int(array.size) if isinstance(array, np.ndarray) else 0


def census(key: str) -> tuple[list, int, str]:
    """The launches of the workload's third step — or, where the model's steps are one launch (nn/cudafused.py),
    of its whole three-step epoch: (kernel, threads, largest array's elements), a cuBLAS call as (its routine and
    sizes, 0, 0); the device arrays that step built by slicing or reshaping (on a GPU, microseconds of Python
    each); and how a GPU runs the step (one launch an epoch, a step replayed as a CUDA graph, or launch by
    launch)."""
    from numba.cuda.simulator import kernel as simulated
    from numba.cuda.simulator.cudadrv import devicearray

    import gpu
    from nnctl.engine import cuda as kernels
    from nnctl.engine.cuda import blas, launch as launch_geometry
    from nnctl.nn.cudapath import CudaPath

    x, y = gpu.synthetic(key, 3 * gpu.WORKLOADS[key][4])
    fit = gpu.nnctl_fit(key, x, y, "cuda")
    launches: list = []
    step, built = {"count": 0}, []
    original_call, original_step, original_rows = simulated.FakeCUDAKernel.__call__, CudaPath._step, kernels.next_rows
    original_init = devicearray.FakeCUDAArray.__init__

    def building(self, *args, **kwargs):
        built.append(step["count"])
        original_init(self, *args, **kwargs)
    original_gemm, simulated_flag = blas._column_major_gemm, blas.SIMULATED

    def launch(self, *args):
        if self._device or simulated._kernel_context:  # a device function inside a kernel: not a launch
            return original_call(self, *args)
        grid, block = simulated.normalize_kernel_dimensions(self.grid_dim, self.block_dim)
        blocks, threads = int(np.prod(grid)), int(np.prod(block))
        kernel = f"{self.fn.__module__}.{self.fn.__name__}"
        if past_limits(grid, block):
            OUT_OF_BOUNDS.add(f"{kernel} (grid {tuple(grid)}, block {tuple(block)})")
        if threads > launch_geometry.WIDE.get(kernel, launch_geometry.DEFAULT_BOUND):  # (launch.wide)
            TOO_WIDE.add(f"{kernel} ({threads} threads a block)")
        launches.append((step["count"], f"{self.fn.__module__.rsplit('.', 1)[-1]}.{self.fn.__name__}",
                         blocks * threads, max((_elements(arg) for arg in args), default=0)))
        return None  # the body skipped: the census needs the launches, not their results

    def cublas(trans_first, trans_second, m, n, k, *operands):
        launches.append((step["count"], f"cuBLAS gemm {'NT'[trans_first]}{'NT'[trans_second]} m={m} n={n} k={k}",
                         0, 0))

    def counting_step(self, *args, **kwargs):
        step["count"] += kwargs.get("update") is None  # (a replayed step begins at its rows: counted there)
        return original_step(self, *args, **kwargs)

    def counting_rows(*args):
        step["count"] += 1
        return original_rows(*args)

    # As on a GPU: the GEMMs big enough go to cuBLAS (recorded, not run), the others to the Numba kernels.
    simulated.FakeCUDAKernel.__call__, CudaPath._step, kernels.next_rows = launch, counting_step, counting_rows
    blas._column_major_gemm, blas.SIMULATED = cublas, False
    fit(1)  # a first epoch makes what a path makes once
    launches.clear()
    step["count"] = 0
    devicearray.FakeCUDAArray.__init__ = building
    try:
        fit(1)
    finally:
        simulated.FakeCUDAKernel.__call__, CudaPath._step = original_call, original_step
        kernels.next_rows = original_rows
        blas._column_major_gemm, blas.SIMULATED = original_gemm, simulated_flag
        devicearray.FakeCUDAArray.__init__ = original_init
    path = next(iter(fit.model._cuda_paths.values()))
    if not any(count for count, *_ in launches):  # no step of its own: the whole epoch is the fit's launches
        return [entry for _, *entry in launches], 0, "one launch an epoch"
    form = "on a GPU one CUDA graph launch a step" if path.replayed is not None else "launch by launch"
    return [entry for count, *entry in launches if count == 3], built.count(3), form


def main() -> None:
    import gpu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(gpu.WORKLOADS))
    parser.add_argument("--flag", type=int, default=256, help="mark launches reading more elements a thread")
    args = parser.parse_args()
    np.seterr(all="ignore")  # the skipped kernels leave their outputs as allocated
    _gpu_geometry()
    for key in args.workloads.split(","):
        launches, built, form = census(key)
        calls = sum(1 for _, threads, _ in launches if not threads)
        print(f"{key}: one step (or a fused epoch), {len(launches) - calls} kernel launches, {calls} cuBLAS calls, "
              f"{built} device arrays built by slicing or reshaping ({form})")
        for name, threads, elements in launches:
            if not threads:
                print(f"  {name}")
                continue
            ratio = elements / threads
            mark = "  <- serial" if ratio > args.flag else ""
            print(f"  {name:44s} {threads:10,d} threads {elements:12,d} elements {ratio:9.1f} a thread{mark}")
    print(f"blocks wider than their kernels declare (launch.wide): {', '.join(sorted(TOO_WIDE)) or 'none'}")
    print(f"grids or blocks past CUDA's limits: {', '.join(sorted(OUT_OF_BOUNDS)) or 'none'}")


if __name__ == "__main__":
    main()
