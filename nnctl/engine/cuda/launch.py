"""Launch geometry shared by the CUDA kernels: `grid1(count)` and `grid2(rows, cols)` give (blocks, threads) for
one thread an element. Every kernel checks its thread's index against its array's bounds and reduces in a
fixed order, so no result depends on these sizes; under NUMBA_ENABLE_CUDASIM=1, which runs each GPU thread as an
OS thread, blocks are smaller so that the simulator tests start fewer threads."""

from __future__ import annotations

import os

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
THREADS = 32 if SIMULATED else 128  # threads per block for 1-D launches
TILE = 4 if SIMULATED else 16  # TILE × TILE blocks for 2-D launches


def grid1(count: int):
    return max(1, (count + THREADS - 1) // THREADS), THREADS


def grid2(rows: int, cols: int):
    return (max(1, (rows + TILE - 1) // TILE), max(1, (cols + TILE - 1) // TILE)), (TILE, TILE)
