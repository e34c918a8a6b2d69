"""CPU kernels of the embedding layer family: the row gather, the touched-rows scatter-add, and the channel
scaling of SpatialDropout. Their NumPy oracles are in nnctl/engine/reference_embedding.py.
"""

from numba import njit

from nnctl.engine import settings

# No kernel here is split over threads: the gather and the scatter stream memory, and a two-thread gather of
# imdb_conv1d's (128, 500) ids from a 10000 × 128 table measured no faster than one thread (1.6 ms either way).


@njit(**settings.KERNEL)
def embedding_gather(ids, table, out):
    """out[i, :] = table[ids[i], :]; returns -1, or the position of the first id outside [0, V) (checked as
    it goes, so the check costs one compare a row). ids: (n,) int32; table: (V, D); out: (n, D).

        for i: r = ids[i]; if not 0 <= r < V: return i; out[i, :] = table[r, :]
    """
    vocabulary = table.shape[0]
    for i in range(ids.shape[0]):
        r = ids[i]
        if r < 0 or r >= vocabulary:
            return i
        for j in range(out.shape[1]):  # element loop: Numba's slice setitem costs seconds of compilation
            out[i, j] = table[r, j]
    return -1


@njit(**settings.KERNEL)
def embedding_scatter_add(ids, dy, grad, touched, count, mark):
    """The table's gradient for one step, touching only the rows the step used; returns the new `count`.

    Clears the rows the previous step wrote (touched[:count]), then adds each dy row into its id's row in
    position order (a fixed order: deterministic); a row's first addend is stored, not added, so its stale
    content never matters. ids: (n,) int32 in [0, V); dy: (n, D); grad: (V, D), zero outside the touched rows;
    touched: (V,) int32, the touched rows in first-use order; mark: (V,) uint8, 1 on the touched rows.

        for r in touched[:count]: grad[r, :] = 0; mark[r] = 0
        for i: r = ids[i]; grad[r, :] = dy[i, :] if not mark[r] (then mark it, append it) else grad[r, :] + dy[i, :]
    """
    width = grad.shape[1]
    for k in range(count):
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
    return count


@njit(**settings.KERNEL)
def scale_channels(x, scale, y):
    """y[b, s, c] = x[b, s, c] · scale[b, c]: SpatialDropout's mask, one value per (sample, channel), broadcast
    over the steps or pixels (forward on x, backward on dy). x, y: (batch, steps, channels); scale: (batch, channels).
    """
    for b in range(x.shape[0]):
        for s in range(x.shape[1]):
            for c in range(x.shape[2]):
                y[b, s, c] = x[b, s, c] * scale[b, c]


KERNELS = ("embedding_gather", "embedding_scatter_add", "scale_channels")
