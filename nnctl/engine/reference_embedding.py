"""NumPy oracles of the embedding family's kernels (nnctl/engine/cpu/embedding.py): same names and arguments,
written to be obviously right rather than fast.
"""

import numpy as np


def embedding_gather(ids, table, out):
    bad = np.flatnonzero((ids < 0) | (ids >= table.shape[0]))
    if bad.size:
        return int(bad[0])
    out[...] = table[ids]
    return -1


def embedding_scatter_add(ids, dy, grad, touched, count, mark):
    stale = touched[:count]
    grad[stale] = 0
    mark[stale] = 0
    _, first = np.unique(ids, return_index=True)
    rows = ids[np.sort(first)]  # unique ids in order of first use
    grad[rows] = 0
    np.add.at(grad, ids, dy)  # unbuffered, in position order
    touched[:rows.size] = rows
    mark[rows] = 1
    return int(rows.size)


def scale_channels(x, scale, y):
    y[...] = x * scale[:, None, :]
