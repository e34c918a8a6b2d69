"""CUDA twins of nnctl/engine/cpu/embedding.py: the row gather, the touched-rows scatter-add, and
SpatialDropout's channel scaling — same arguments and results as the CPU kernels.

The scatter-add keeps the CPU's bookkeeping (touched rows in first-use order, marks) and its order of
additions: one thread walks the ids (the bookkeeping is sequential by nature), then one thread per
(touched row, unit) could follow; at nnctl's batch sizes the walk is short. The gather checks every id.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, grid2, scratch


@cuda.jit(**KERNEL)
def _gather(ids, table, out, bad):
    i, j = cuda.grid(2)
    if i < ids.shape[0] and j < out.shape[1]:
        r = ids[i]
        if r < 0 or r >= table.shape[0]:
            if j == 0:
                cuda.atomic.min(bad, 0, i)  # the first bad position, whatever the thread order
        else:
            out[i, j] = table[r, j]


def embedding_gather(ids, table, out, check=True):
    """out[i, :] = table[ids[i], :]; returns -1, or the position of the first id outside [0, V). With
    check=False (ids already checked, as the CUDA path does once per dataset) nothing comes back to the host:
    an id out of range leaves its row as it was and None is returned."""
    bad = cuda.to_device(np.array([ids.shape[0]], np.int64)) if check else scratch("gather bad", 1, np.int64)
    _gather[grid2(ids.shape[0], out.shape[1])](ids, table, out, bad)
    if not check:
        return None
    first = int((bad.copy_to_host() if hasattr(bad, "copy_to_host") else bad)[0])
    return -1 if first == ids.shape[0] else first


@cuda.jit(**KERNEL)
def _scatter_add(ids, dy, grad, touched, counter, mark):
    """counter[0]: the rows touched[:count] the last step wrote (cleared first); the new count goes back there."""
    if cuda.grid(1) != 0:
        return
    width = grad.shape[1]
    for k in range(counter[0]):
        r = touched[k]
        mark[r] = 0
        for j in range(width):
            grad[r, j] = 0.0
    count = 0
    for i in range(ids.shape[0]):
        r = ids[i]
        if mark[r] == 0:
            mark[r] = 1
            touched[count] = r
            count += 1
            for j in range(width):
                grad[r, j] = dy[i, j]
        else:
            for j in range(width):
                grad[r, j] += dy[i, j]
    counter[0] = count


def embedding_scatter_add(ids, dy, grad, touched, count, mark, counter=None):
    """The table's gradient for one step, touching only the rows the step used; returns the new count
    (the CPU kernel's contract: the last step's rows cleared, each row's first addend stored). With `counter`
    (a device int64 array of one, holding the count; `count` is then ignored) the count stays on the device
    and None is returned: no synchronization per step."""
    if counter is not None:
        _scatter_add[1, 1](ids, dy, grad, touched, counter, mark)
        return None
    counter = cuda.to_device(np.array([count], np.int64))
    _scatter_add[1, 1](ids, dy, grad, touched, counter, mark)
    return int((counter.copy_to_host() if hasattr(counter, "copy_to_host") else counter)[0])


@cuda.jit(**KERNEL)
def _scale(x, scale, y):
    b, s, c = cuda.grid(3)
    if b < x.shape[0] and s < x.shape[1] and c < x.shape[2]:
        y[b, s, c] = x[b, s, c] * scale[b, c]


def scale_channels(x, scale, y):
    """y[b, s, c] = x[b, s, c] · scale[b, c]. x, y: (batch, steps, channels); scale: (batch, channels)."""
    threads = (4, 8, 8)
    grid = tuple((size + t - 1) // t for size, t in zip(x.shape, threads))
    _scale[grid, threads](x, scale, y)


KERNELS = ("embedding_gather", "embedding_scatter_add", "scale_channels")
