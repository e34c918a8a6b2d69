"""The 2-D launches' geometry (nnctl/engine/cuda/launch.py): `grid2` puts its blocks' x across an array's columns,
so that a warp's neighbouring threads take neighbouring addresses of a row, and at most ROW_BLOCKS blocks down
its rows (CUDA refuses a grid more than 65,535 blocks high); `cells()` gives a thread its column and its rows,
which cover every cell of the array exactly once however many rows there are."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from nnctl.engine.cuda import launch
from nnctl.engine.cuda.launch import cells, grid2, on


@cuda.jit
def _visits(count, first_column):
    """count[r, c] += 1 for each cell a thread takes; first_column[ty, tx] = the column of block (0, 0)'s threads."""
    column, row0, row_step = cells()
    if cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0:
        first_column[cuda.threadIdx.y, cuda.threadIdx.x] = column
    if column < count.shape[1]:
        for row in range(row0, count.shape[0], row_step):
            count[row, column] += 1


@pytest.mark.parametrize("shape", [(1, 1), (3, 50), (37, 5), (64, 9), (5, 64)])
def test_every_cell_is_taken_once_and_a_warp_runs_along_a_row(shape):
    blocks, threads = grid2(*shape)
    assert blocks[0] * threads[0] >= shape[1] and blocks[1] <= launch.ROW_BLOCKS
    count = cuda.to_device(np.zeros(shape, np.int32))
    first_column = cuda.to_device(np.full(threads[::-1], -1, np.int64))
    _visits[on(blocks, threads)](count, first_column)
    assert (count.copy_to_host() == 1).all()
    # threads side by side in x (a warp's neighbours) take neighbouring columns of one row
    assert (first_column.copy_to_host() == np.arange(threads[0])[None, :]).all()


def test_past_the_grids_height_a_thread_walks_rows(monkeypatch):
    """At a GPU's geometry, a (rows, 3) array of ten million rows and a 1.3M-weight row stay within CUDA's grid;
    under the simulator's (2 blocks high) a 37-row array is walked."""
    monkeypatch.setattr(launch, "TILE", 16)
    monkeypatch.setattr(launch, "ROW_BLOCKS", 65535)
    assert grid2(10 ** 7, 3) == ((1, 65535), (16, 16))
    assert grid2(1, 1_300_000) == ((81250, 1), (16, 16))  # (before: 81,250 blocks high, refused)
    monkeypatch.setattr(launch, "TILE", 4)
    monkeypatch.setattr(launch, "ROW_BLOCKS", 2)
    assert grid2(37, 5) == ((2, 2), (4, 4))  # 8 rows a pass: each thread takes up to 5 rows
