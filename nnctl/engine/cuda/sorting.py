"""A stable counting sort of n integer keys in [0, K) on the GPU, in parallel and without atomics (so its order is
fixed): the positions of each key in position order, for the GPU's gathers that replace the CPU's scatters (an
embedding's table gradient, the sparse input's weight gradient).

The positions go in chunks of `span` (256, more when the chunks' counts would pass _COUNTS), one thread a chunk
counting its keys (and each position's rank among its chunk's equal keys); one thread a key turns its chunks'
counts into offsets; one block ranks the keys (`key_starts`: each thread a run of keys, the runs' sums scanned in
shared memory — one thread walking 10,000 keys would wait on memory at each); one thread a position places it.
`zero_ints`, `key_offsets` and `key_starts` also serve sparse.py's sort of a batch's non-zeros by column.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, SIMULATED, grid1, on, scratch

_SPAN, _COUNTS = 256, 1 << 23  # a chunk is one thread's walk: short, since each position waits on memory
SCAN_THREADS = 32 if SIMULATED else 1024  # key_starts' one block (the simulator runs a thread per OS thread)


@cuda.jit(**KERNEL)
def zero_ints(x):
    k = cuda.grid(1)
    if k < x.shape[0]:
        x[k] = 0


@cuda.jit(**KERNEL)
def _chunk_counts(keys, span, counts, rank):
    c = cuda.grid(1)
    if c < counts.shape[0]:
        for i in range(c * span, min(keys.shape[0], (c + 1) * span)):
            rank[i] = counts[c, keys[i]]
            counts[c, keys[i]] += 1


@cuda.jit(**KERNEL)
def key_offsets(counts, totals):
    """counts[c, r] → the number of key r's positions in chunks before c; totals[r] = all of them; per key."""
    r = cuda.grid(1)
    if r < counts.shape[1]:
        running = 0
        for c in range(counts.shape[0]):
            n = counts[c, r]
            counts[c, r] = running
            running += n
        totals[r] = running


@cuda.jit(**KERNEL)
def _key_starts(totals, starts):
    t, keys = cuda.threadIdx.x, totals.shape[0]
    per = (keys + SCAN_THREADS - 1) // SCAN_THREADS
    first, stop = t * per, min(keys, (t + 1) * per)
    own = 0
    for r in range(first, stop):
        own += totals[r]
    sums = cuda.shared.array(SCAN_THREADS, numba.int64)
    sums[t] = own
    cuda.syncthreads()
    step = 1
    while step < SCAN_THREADS:  # an inclusive scan of the runs' sums (Hillis–Steele)
        before = sums[t - step] if t >= step else 0
        cuda.syncthreads()
        sums[t] += before
        cuda.syncthreads()
        step *= 2
    running = sums[t] - own
    for r in range(first, stop):
        starts[r] = running
        running += totals[r]
    if t == SCAN_THREADS - 1:
        starts[keys] = sums[t]


def key_starts(totals, starts):
    """starts[r] = totals[0] + … + totals[r − 1] for every key, and starts[K] the total (integers: exact in any
    order)."""
    _key_starts[on(1, SCAN_THREADS)](totals, starts)


@cuda.jit(**KERNEL)
def _place(keys, span, counts, rank, starts, positions):
    i = cuda.grid(1)
    if i < keys.shape[0]:
        r = keys[i]
        positions[starts[r] + counts[i // span, r] + rank[i]] = i


def stable_order(keys, key_count: int):
    """(starts, positions): device int32 arrays, key r's positions in order being
    positions[starts[r]:starts[r + 1]]. keys: (n,) int32 device array in [0, key_count). Both are reused
    scratch buffers, valid until the next call."""
    n = keys.shape[0]
    span = max(_SPAN, -(-n * key_count // _COUNTS))
    chunks = max(1, -(-n // span))
    zero_ints[on(*grid1(chunks * key_count))](scratch("sort counts", chunks * key_count, np.int32))
    counts = scratch("sort counts", chunks * key_count, np.int32, shape=(chunks, key_count))
    rank, totals = scratch("sort ranks", max(1, n), np.int32), scratch("sort totals", key_count, np.int32)
    starts, positions = scratch("sort starts", key_count + 1, np.int32), scratch("sort order", max(1, n), np.int32)
    _chunk_counts[on(*grid1(chunks))](keys, span, counts, rank)
    key_offsets[on(*grid1(key_count))](counts, totals)
    key_starts(totals, starts)
    _place[on(*grid1(n))](keys, span, counts, rank, starts, positions)
    return starts, positions


KERNELS = ()  # (the GPU's own helpers: no kernel for the backend to export; listed in MODULES to be tested)
