"""A stable counting sort of n integer keys in [0, K) on the GPU, in parallel and without atomics (so its order is
fixed): the positions of each key in position order, for the GPU's gathers that replace the CPU's scatters (an
embedding's table gradient, the sparse input's weight gradient).

The positions go in chunks of `span` (_SPAN, more when the chunks' counts would pass _COUNTS): a block a chunk, a
thread a position, its rank among the chunk's equal keys counted from the chunk's keys in shared memory and the
chunk's count of each key written by the key's last position (a wider chunk: one thread walking it). `key_offsets`
turns each key's chunk counts into offsets — lanes down the column, each a run of chunks, the runs' sums scanned
in shared memory; one block ranks the keys (`key_starts`: each thread a run of keys, the runs' sums scanned in
shared memory); one thread a position places it. One thread walking thousands of values, each read after the
last, would wait on memory at each. `zero_ints`, `key_offsets` and `key_starts` also serve sparse.py's sort of a
batch's non-zeros by column.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from nnctl.engine.cuda import columns
from nnctl.engine.cuda.columns import LANES, WIDTH
from nnctl.engine.cuda.launch import KERNEL, SIMULATED, grid1, on, scratch, wide

# A chunk's positions: a block's threads (fewer under the simulator, which runs a thread per OS thread; the order
# found is the same for any chunking); past _COUNTS chunk counts, chunks widen and a thread walks each.
RANK_SPAN = 32 if SIMULATED else 256
_SPAN, _COUNTS = RANK_SPAN, 1 << 23
SCAN_THREADS_GPU = 1024
SCAN_THREADS = 32 if SIMULATED else SCAN_THREADS_GPU  # key_starts' one block


@cuda.jit(**KERNEL)
def zero_ints(x):
    k = cuda.grid(1)
    if k < x.shape[0]:
        x[k] = 0


@cuda.jit(**KERNEL)
def _chunk_counts(keys, span, counts, rank):
    """A thread a chunk of `span` positions, walking them (chunks wider than a block)."""
    c = cuda.grid(1)
    if c < counts.shape[0]:
        for i in range(c * span, min(keys.shape[0], (c + 1) * span)):
            rank[i] = counts[c, keys[i]]
            counts[c, keys[i]] += 1


@cuda.jit(**KERNEL)
def _chunk_ranks(keys, counts, rank):
    """A block a chunk of RANK_SPAN positions, a thread a position: rank[i] = the chunk's earlier positions of
    its key (read from the chunk's keys in shared memory, every thread the same one at a time: a broadcast), and
    counts[c, key] = all of them, written by the key's last position."""
    c, t = cuda.blockIdx.x, cuda.threadIdx.x
    here = cuda.shared.array(RANK_SPAN, numba.int32)
    i = c * RANK_SPAN + t
    key = keys[i] if i < keys.shape[0] else -1
    here[t] = key
    cuda.syncthreads()
    if i < keys.shape[0]:
        before = 0
        last = True
        for u in range(RANK_SPAN):
            if here[u] == key:
                if u < t:
                    before += 1
                elif u > t:
                    last = False
        rank[i] = before
        if last:
            counts[c, key] = before + 1


@wide(columns.BLOCK_THREADS)
def _key_offsets(counts, totals):
    """Lanes down each column of counts (a block: WIDTH keys side by side, LANES lanes), each a run of rows."""
    tx, lane = cuda.threadIdx.x, cuda.threadIdx.y
    r = cuda.blockIdx.x * WIDTH + tx
    rows = counts.shape[0]
    per = (rows + LANES - 1) // LANES
    first, stop = lane * per, min(rows, (lane + 1) * per)
    runs = cuda.shared.array((LANES, WIDTH), numba.int64)
    own = 0
    if r < counts.shape[1]:
        for c in range(first, stop):
            own += counts[c, r]
    runs[lane, tx] = own
    cuda.syncthreads()
    if lane == 0:  # the runs' sums scanned, exclusive (integers: exact in any order)
        running = 0
        for k in range(LANES):
            n = runs[k, tx]
            runs[k, tx] = running
            running += n
        if r < counts.shape[1]:
            totals[r] = running
    cuda.syncthreads()
    if r < counts.shape[1]:
        running = runs[lane, tx]
        for c in range(first, stop):
            n = counts[c, r]
            counts[c, r] = running
            running += n


def key_offsets(counts, totals):
    """counts[c, r] → the number of key r's positions in rows before c; totals[r] = all of them (integers)."""
    _key_offsets[on(-(-counts.shape[1] // WIDTH), (WIDTH, LANES))](counts, totals)


@wide(SCAN_THREADS_GPU)
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
    if span == RANK_SPAN:
        _chunk_ranks[on(chunks, RANK_SPAN)](keys, counts, rank)
    else:
        _chunk_counts[on(*grid1(chunks))](keys, span, counts, rank)
    key_offsets(counts, totals)
    key_starts(totals, starts)
    _place[on(*grid1(n))](keys, span, counts, rank, starts, positions)
    return starts, positions


KERNELS = ()  # (the GPU's own helpers: no kernel for the backend to export; listed in MODULES to be tested)
