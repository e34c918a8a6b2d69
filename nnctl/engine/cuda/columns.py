"""Sums down the columns of a tall (rows, columns) array — a convolution's bias gradient over every pixel of the
batch, a recurrent layer's over samples × steps, a BatchNormalization's statistics and gradients over a conv
output — in parallel and in one fixed order, so the bytes do not depend on the GPU or the launch geometry.

A block takes WIDTH columns side by side (a warp reads a row's WIDTH neighbours: one transaction) and a chunk of
CHUNK rows, read by LANES lanes: lane l adds rows l, l + LANES, … of the chunk in order (float64), then the lanes'
sums meet in a fixed tree in shared memory. A second launch adds each column's chunk sums the same way (lane l
takes chunks l, l + LANES, …) and writes the result. One thread walking a column of 43,000 rows waits on memory
at every row (~0.3 µs each on the H200 that #20's first run measured); here a thread waits on CHUNK / LANES
loads, issued together. Each sum carries two accumulators (a BatchNormalization gradient needs Σ dy and
Σ dy·x̂): `chunks_total` and `lanes_total` are the device functions the kernels that compute their terms (here,
dense.py, normalization.py) share.

The order depends on CHUNK and LANES alone (fixed on every device); WIDTH only groups columns, and is smaller
under the simulator, which runs each GPU thread as an OS thread. A Dense layer's bias sums of up to TALL rows keep
their one-thread walk (a batch: its bytes are those of the one-launch step, nn/cudafused.py); normalization's
sums, with no such twin, take the two launches past SHORT rows.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import SIMULATED, on, scratch, wide

CHUNK = 256  # rows a block sums
LANES = 16  # a block's threads down a column (a power of two: the tree)
WIDTH = 8 if SIMULATED else 32  # a block's columns
TALL = 2 * CHUNK  # past this many rows, a column sum takes the two launches here
SHORT = 64  # ... and a sum no one-thread form elsewhere must match the bytes of (BatchNorm's, LayerNorm's) past these
BLOCK_THREADS = 32 * LANES  # a block's threads on a GPU (the kernels' launch bound)


def tall(rows: int, limit: int = TALL) -> bool:
    return rows > limit


def geometry(rows: int, columns: int):
    """(the first launch's blocks, threads, chunks): chunks along x, groups of WIDTH columns along y."""
    chunks = -(-rows // CHUNK)
    return (chunks, -(-columns // WIDTH)), (WIDTH, LANES), chunks


def partials(chunks: int, columns: int):
    """The chunks' two sums a column (float64), a reused scratch buffer."""
    return scratch("column partials", 2 * chunks * columns, np.float64, shape=(2, chunks, columns))


@cuda.jit(device=True)
def lanes_total(a, b):
    """The block's lanes' (a, b) for this thread's column, added in a fixed tree; valid in lane 0. Every thread
    of the block calls it (it waits at the block's barrier)."""
    tx, lane = cuda.threadIdx.x, cuda.threadIdx.y
    first = cuda.shared.array((LANES, WIDTH), numba.float64)
    second = cuda.shared.array((LANES, WIDTH), numba.float64)
    first[lane, tx] = a
    second[lane, tx] = b
    cuda.syncthreads()
    step = LANES // 2
    while step > 0:
        if lane < step:
            first[lane, tx] += first[lane + step, tx]
            second[lane, tx] += second[lane + step, tx]
        cuda.syncthreads()
        step //= 2
    return first[0, tx], second[0, tx]


@cuda.jit(device=True)
def place_chunk(a, b, parts):
    """The block's chunk sums for its columns into parts[:, chunk, column] (after each lane's own a, b)."""
    a, b = lanes_total(a, b)
    column = cuda.blockIdx.y * WIDTH + cuda.threadIdx.x
    if cuda.threadIdx.y == 0 and column < parts.shape[2]:
        parts[0, cuda.blockIdx.x, column] = a
        parts[1, cuda.blockIdx.x, column] = b


@cuda.jit(device=True)
def chunks_total(parts, pairs):
    """(column, Σ first, Σ second) over parts' chunks for this thread's column (the second only when `pairs`);
    the sums valid in lane 0."""
    column = cuda.blockIdx.y * WIDTH + cuda.threadIdx.x
    a = 0.0
    b = 0.0
    if column < parts.shape[2]:
        for k in range(cuda.threadIdx.y, parts.shape[1], LANES):
            a += parts[0, k, column]
            if pairs:
                b += parts[1, k, column]
    a, b = lanes_total(a, b)
    return column, a, b


@cuda.jit(device=True)
def rows_of(x):
    """(column, first row, stop) of this thread's walk: rows first, first + LANES, … < stop of its chunk."""
    column = cuda.blockIdx.y * WIDTH + cuda.threadIdx.x
    return column, cuda.blockIdx.x * CHUNK + cuda.threadIdx.y, min(x.shape[0], (cuda.blockIdx.x + 1) * CHUNK)


@wide(BLOCK_THREADS)
def _sum_chunks(x, parts):
    column, first, stop = rows_of(x)
    a = 0.0
    if column < x.shape[1]:
        for r in range(first, stop, LANES):
            a += x[r, column]
    place_chunk(a, 0.0, parts)


@wide(BLOCK_THREADS)
def _deviation_chunks(x, center, parts):
    """Σ (x − center)² a column (a variance's second pass)."""
    column, first, stop = rows_of(x)
    a = 0.0
    if column < x.shape[1]:
        m = center[column]
        for r in range(first, stop, LANES):
            d = x[r, column] - m
            a += d * d
    place_chunk(a, 0.0, parts)


@wide(BLOCK_THREADS)
def _finish_sums(parts, divisor, out):
    column, a, _ = chunks_total(parts, False)
    if cuda.threadIdx.y == 0 and column < out.shape[0]:
        out[column] = a / divisor


@wide(BLOCK_THREADS)
def _finish_pairs(parts, first, second, first_copy, second_copy):
    column, a, b = chunks_total(parts, True)
    if cuda.threadIdx.y == 0 and column < first.shape[0]:
        first[column] = a
        second[column] = b
        first_copy[column] = a
        second_copy[column] = b


def column_sums(x, out, divisor: float = 1.0):
    """out[j] = Σ_i x[i, j] / divisor for a tall x (rows > TALL): two launches."""
    blocks, threads, chunks = geometry(*x.shape)
    parts = partials(chunks, x.shape[1])
    _sum_chunks[on(blocks, threads)](x, parts)
    finish_sums(parts, out, divisor)


def deviation_chunks(x, center):
    """The first launch of Σ_i (x[i, j] − center[j])² for a tall x (a variance's second pass): its chunks' sums,
    for a kernel that finishes them."""
    blocks, threads, chunks = geometry(*x.shape)
    parts = partials(chunks, x.shape[1])
    _deviation_chunks[on(blocks, threads)](x, center, parts)
    return parts


def last(parts):
    """The second launch's configuration: a block a group of columns."""
    return on((1, -(-parts.shape[2] // WIDTH)), (WIDTH, LANES))


def finish_sums(parts, out, divisor: float = 1.0):
    """out[j] = each column's first sums over parts' chunks / divisor (the second launch)."""
    _finish_sums[last(parts)](parts, float(divisor), out)


def finish_pairs(parts, first, second, first_copy, second_copy):
    """Both sums of each column's chunks into first and second (and their copies: the same arrays may be
    passed twice)."""
    _finish_pairs[last(parts)](parts, first, second, first_copy, second_copy)


KERNELS = ()  # (the GPU's own helpers; listed in MODULES to be tested)
