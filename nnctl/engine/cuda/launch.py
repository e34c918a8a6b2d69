"""Launch geometry shared by the CUDA kernels: `grid1(count)` and `grid2(rows, cols)` give (blocks, threads) for
one thread an element, and `on(blocks, threads)` the launch configuration on the stream the launches go to (the
default stream, or the stream a step is being recorded on: nnctl/engine/cuda/graphs.py). Every kernel checks its
thread's index against its array's bounds and reduces in a fixed order, so no result depends on these sizes; under
NUMBA_ENABLE_CUDASIM=1, which runs each GPU thread as an OS thread, blocks are smaller so that the simulator tests
start fewer threads. A grid2 kernel's thread finds its cells with `cells()`. `scratch` hands out reused device
temporaries; `view` (nnctl/engine/views.py) makes a device array's views once."""

from __future__ import annotations

import os

import numpy as np
from numba import cuda

from nnctl.engine.views import view

# Options of every kernel: its machine code is cached beside Numba's other caches, so a later run skips the
# compile (a first GPU run compiles them during the "compiling kernels" warm-up).
KERNEL = {"cache": True}
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
DEFAULT_BOUND = 256  # the most threads a block of grid1/grid2's launches has; a kernel launched wider says so
WIDE: dict = {}  # "module.kernel" → the most threads a block of it has on a GPU, where more than DEFAULT_BOUND


def wide(threads: int):
    """cuda.jit(**KERNEL) for a kernel launched on a GPU with blocks of up to `threads` threads (more than
    DEFAULT_BOUND): its launch bound, so that the compiler keeps its registers within a block's share (64 a thread
    at 1,024) — a kernel that took more would be refused at launch ("too many resources requested"), which the
    simulator never sees. tests/engine/cuda_compile.py compiles each kernel with its bound (checked in the PTX);
    bench/gpu_census.py checks every launch's block, at a GPU's geometry, against WIDE (or DEFAULT_BOUND). The
    simulator takes no bounds."""
    def jit(function):
        WIDE[f"{function.__module__}.{function.__name__}"] = threads
        return cuda.jit(**(KERNEL if SIMULATED else {**KERNEL, "launch_bounds": threads}))(function)
    return jit


THREADS = 32 if SIMULATED else 128  # threads per block for 1-D launches
TILE = 4 if SIMULATED else 16  # TILE × TILE blocks for 2-D launches


def grid1(count: int):
    return max(1, (count + THREADS - 1) // THREADS), THREADS


# A grid's y dimension: at most 65,535 blocks (CUDA's limit); past it a 2-D kernel's threads walk its rows. The
# simulator takes 2, so that every 2-D kernel's tests walk rows.
ROW_BLOCKS = 2 if SIMULATED else 65535


def grid2(rows: int, cols: int):
    """A launch over a (rows, cols) C-ordered array, a thread a cell (`cells`): the blocks' x across the columns, so
    that a warp's threads read and write neighbouring addresses of a row (down the rows, a warp's accesses would
    fall in sixteen rows' sectors), their y down the rows, at most ROW_BLOCKS of them."""
    return (max(1, (cols + TILE - 1) // TILE), min(ROW_BLOCKS, max(1, (rows + TILE - 1) // TILE))), (TILE, TILE)


@cuda.jit(device=True)
def cells():
    """A grid2 kernel's thread: (its column, its first row, the rows' step). It takes rows first, first + step, …
    below the array's height: more than one where the rows outnumber the grid's (ROW_BLOCKS)."""
    column, row = cuda.grid(2)
    return column, row, cuda.gridsize(2)[1]


# The stream every launch goes to: 0, the default stream, except while a step is recorded into a CUDA graph
# (graphs.py sets it to the recording stream for that while).
STREAM: list = [0]
# Bumped each time a scratch buffer is (re)allocated: a recorded graph holds the old buffer's address.
GENERATION = [0]


def on(blocks, threads, shared: int = 0):
    """A kernel's launch configuration, kernel[on(*grid1(n))](…): its blocks and threads (`shared`: bytes of
    dynamic shared memory) on the stream of the moment (STREAM)."""
    return blocks, threads, STREAM[0], shared


_SCRATCH: dict = {}


def scratch(key: str, size: int, dtype=np.float64, shape=None):
    """A device array of `size` elements (as `shape` when given), reused from call to call (grows, never shrinks),
    for a kernel's temporaries: a step allocated several before (the losses, a sum's partials), each a cudaMalloc.
    Reuse is safe because every launch goes to the default stream in order: a later call's writes queue behind
    the earlier call's reads. The view of each size and shape is made once (a device-array view is Python work of
    microseconds)."""
    dtype = np.dtype(dtype)
    buffer = _SCRATCH.get((key, dtype))
    if buffer is None or buffer.shape[0] < size:
        from numba import cuda

        buffer = _SCRATCH[(key, dtype)] = cuda.device_array(max(size, 1), dtype)
        GENERATION[0] += 1
    return view(buffer, ("scratch", size, shape), lambda b: b[:size] if shape is None else b[:size].reshape(shape))
