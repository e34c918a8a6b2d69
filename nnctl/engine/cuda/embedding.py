"""CUDA twins of nnctl/engine/cpu/embedding.py: the row gather, the touched-rows scatter-add, and
SpatialDropout's channel scaling — same arguments and results as the CPU kernels.

The scatter-add keeps the CPU's bookkeeping (touched rows in first-use order, marks) and its order of
additions: one thread walks the ids, integers only (the bookkeeping is sequential by nature), listing each
touched row's positions in order; then one thread a (touched row, unit) sums its rows of dy in that order, so
the bytes are the CPU's. The gather checks every id.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, cells, grid1, grid2, on, scratch
from nnctl.engine.cuda.sorting import key_starts, stable_order

ROW_CHUNK = 256  # a table-gradient row with more positions in a step is summed in pieces of this many


@cuda.jit(**KERNEL)
def _gather(ids, table, out, bad):
    j, row0, row_step = cells()
    if j < out.shape[1]:
        for i in range(row0, ids.shape[0], row_step):
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
    _gather[on(*grid2(ids.shape[0], out.shape[1]))](ids, table, out, bad)
    if not check:
        return None
    first = int((bad.copy_to_host() if hasattr(bad, "copy_to_host") else bad)[0])
    return -1 if first == ids.shape[0] else first


@cuda.jit(**KERNEL)
def _clear_rows(grad, touched, counter):
    """grad's rows the last step wrote (touched[:counter[0]]) back to 0."""
    j, row0, row_step = cells()
    if j < grad.shape[1]:
        for k in range(row0, counter[0], row_step):
            grad[touched[k], j] = 0.0


@cuda.jit(**KERNEL)
def _segments(ids, touched, counter, mark, slot_of_row, slot, starts, cursor, positions):
    """One thread, integers only: the CPU's bookkeeping (the last step's marks cleared, this step's rows in
    first-use order in touched, marked) and, per touched row k, its positions in the batch in order:
    positions[starts[k]:starts[k + 1]]. The sums then run one thread a (row, unit)."""
    if cuda.grid(1) != 0:
        return
    for k in range(counter[0]):
        mark[touched[k]] = 0
    count = 0
    for i in range(ids.shape[0]):
        r = ids[i]
        if mark[r] == 0:
            mark[r] = 1
            slot_of_row[r] = count
            touched[count] = r
            starts[count + 1] = 0
            count += 1
        slot[i] = slot_of_row[r]
        starts[slot[i] + 1] += 1
    starts[0] = 0
    for k in range(count):
        starts[k + 1] += starts[k]
        cursor[k] = starts[k]
    for i in range(ids.shape[0]):
        positions[cursor[slot[i]]] = i
        cursor[slot[i]] += 1
    counter[0] = count


@cuda.jit(**KERNEL)
def _segment_sums(dy, grad, touched, counter, starts, positions):
    """grad[touched[k], j] = dy[p₀, j] + dy[p₁, j] + … over row k's positions in order: the CPU's additions."""
    j, row0, row_step = cells()
    if j < grad.shape[1]:
        for k in range(row0, counter[0], row_step):
            first, stop = starts[k], starts[k + 1]
            total = dy[positions[first], j]
            for p in range(first + 1, stop):
                total += dy[positions[p], j]
            grad[touched[k], j] = total


def embedding_scatter_add(ids, dy, grad, touched, count, mark, counter=None):
    """The table's gradient for one step, touching only the rows the step used; returns the new count
    (the CPU kernel's contract and bytes: the last step's rows cleared, each row's addends summed in position
    order from its first). With `counter` (a device int64 array of one, holding the count; `count` is then
    ignored) the count stays on the device and None is returned: no synchronization per step."""
    given = counter is not None
    if not given:
        counter = cuda.to_device(np.array([count], np.int64))
    n, rows = ids.shape[0], min(grad.shape[0], ids.shape[0])
    _clear_rows[on(*grid2(grad.shape[0], grad.shape[1]))](grad, touched, counter)
    starts, positions = scratch("slot starts", n + 1, np.int32), scratch("slot positions", n, np.int32)
    _segments[on(1, 1)](ids, touched, counter, mark, scratch("row slots", grad.shape[0], np.int32),
                        scratch("id slots", n, np.int32), starts, scratch("slot cursors", n, np.int32), positions)
    _segment_sums[on(*grid2(rows, grad.shape[1]))](dy, grad, touched, counter, starts, positions)
    if given:
        return None
    return int((counter.copy_to_host() if hasattr(counter, "copy_to_host") else counter)[0])


@cuda.jit(**KERNEL)
def _piece_counts(starts, chunk, pieces):
    r = cuda.grid(1)
    if r < pieces.shape[0]:
        pieces[r] = (starts[r + 1] - starts[r] + chunk - 1) // chunk


@cuda.jit(**KERNEL)
def _piece_sums(dy, starts, positions, piece_starts, chunk, sums, grad):
    """Piece q of row r (positions starts[r] + k·chunk onwards, k = q − piece_starts[r]): its rows of dy added in
    order, into grad[r] when it is the row's only piece, else into sums[q]. One thread a (piece, unit)."""
    j, row0, row_step = cells()
    rows = piece_starts.shape[0] - 1
    if j < grad.shape[1]:
        for q in range(row0, min(sums.shape[0], piece_starts[rows]), row_step):
            low, high = 0, rows - 1  # the row whose pieces hold q: the last r with piece_starts[r] <= q
            while low < high:
                middle = (low + high + 1) // 2
                if piece_starts[middle] <= q:
                    low = middle
                else:
                    high = middle - 1
            r = low
            first = starts[r] + (q - piece_starts[r]) * chunk
            stop = min(starts[r + 1], first + chunk)
            total = dy[positions[first], j]
            for p in range(first + 1, stop):
                total += dy[positions[p], j]
            if piece_starts[r + 1] - piece_starts[r] == 1:
                grad[r, j] = total
            else:
                sums[q, j] = total


@cuda.jit(**KERNEL)
def _piece_totals(piece_starts, sums, grad):
    """Rows of several pieces: their pieces' sums added in order; rows of none: 0. One thread a (row, unit)."""
    j, row0, row_step = cells()
    if j < grad.shape[1]:
        for r in range(row0, grad.shape[0], row_step):
            first, stop = piece_starts[r], piece_starts[r + 1]
            if first == stop:
                grad[r, j] = 0.0
            elif stop - first > 1:
                total = sums[first, j]
                for q in range(first + 1, stop):
                    total += sums[q, j]
                grad[r, j] = total


def embedding_table_grad(ids, dy, grad, chunk=None):
    """grad = the table's whole gradient for one step: row r = the sum of dy's rows at r's positions, in
    position order (the CPU scatter's additions, so the same bytes), 0 for the rows the step did not use — except
    that a row with more than `chunk` (ROW_CHUNK) positions is added in pieces of `chunk` positions, each in
    order, then the pieces in order (a fixed order still; one thread walking an IMDB batch's 30,000 padding
    positions would wait on memory at each). The GPU's own: its optimizer steps the table as a dense weight, so
    no touched-rows bookkeeping is needed, and every stage runs in parallel (sorting.stable_order; the scatter's
    bookkeeping is one thread over the ids). ids: (n,) int32 in [0, V); dy: (n, d); grad: (V, d), overwritten."""
    chunk = chunk or ROW_CHUNK
    (n, units), rows = dy.shape, grad.shape[0]
    starts, positions = stable_order(ids, rows)
    pieces = scratch("table pieces", rows, np.int32)
    _piece_counts[on(*grid1(rows))](starts, chunk, pieces)
    piece_starts = scratch("table piece starts", rows + 1, np.int32)
    key_starts(pieces, piece_starts)
    most = min(n, rows + n // chunk)  # every row's first piece, plus at most n / chunk more
    sums = scratch("table piece sums", max(1, most) * units, np.float32, shape=(max(1, most), units))
    _piece_sums[on(*grid2(max(1, most), units))](dy, starts, positions, piece_starts, chunk, sums, grad)
    _piece_totals[on(*grid2(rows, units))](piece_starts, sums, grad)


@cuda.jit(**KERNEL)
def _scale(x, scale, y):
    c, row0, row_step = cells()
    steps = x.shape[1]
    if c < x.shape[2]:
        for row in range(row0, x.shape[0] * steps, row_step):
            b, s = row // steps, row % steps
            y[b, s, c] = x[b, s, c] * scale[b, c]


def scale_channels(x, scale, y):
    """y[b, s, c] = x[b, s, c] · scale[b, c]. x, y: (batch, steps, channels); scale: (batch, channels)."""
    _scale[on(*grid2(x.shape[0] * x.shape[1], x.shape[2]))](x, scale, y)


@cuda.jit(**KERNEL)
def _id_mask(ids, mask):
    i = cuda.grid(1)
    if i < ids.shape[0]:
        mask[i] = 1 if ids[i] != 0 else 0


def id_mask(ids, mask):
    """mask = (ids ≠ 0) as uint8, both 1-D: Embedding's mask_zero (the GPU's own)."""
    _id_mask[on(*grid1(ids.shape[0]))](ids, mask)


@cuda.jit(device=True)
def _as_id(v):
    """v cast to int32 as NumPy casts it (toward zero); NaN and values outside int32 as its minimum."""
    return numba.int32(v) if -2147483648.0 <= v < 2147483648.0 else numba.int32(-2147483648)


@cuda.jit(**KERNEL)
def _ids_from_values(x, vocabulary, base, ids, status):
    i = cuda.grid(1)
    if i < x.shape[0]:
        r = _as_id(x[i])
        if r < 0 or r >= vocabulary:
            ids[i] = 0  # read and written by the gather and the gradient safely; the run fails at its end anyway
            cuda.atomic.min(status, 0, base + i)  # the first bad position of the run, whatever the thread order
        else:
            ids[i] = r


@cuda.jit(**KERNEL)
def _bad_id(x, base, status):
    i = cuda.grid(1)
    if i < x.shape[0] and status[0] == base + i:
        status[1] = _as_id(x[i])


def ids_from_values(x, vocabulary, base, ids, status):
    """ids = x cast to int32 as the CPU casts them (1-D); an id outside [0, vocabulary) at position base + i is
    replaced by 0 and puts the run's first such position in status[0] (int64; set it above any position first)
    and its id in status[1], for the host to read once at the end (the GPU's own: an Embedding reading computed
    ids)."""
    _ids_from_values[on(*grid1(x.shape[0]))](x, vocabulary, base, ids, status)
    _bad_id[on(*grid1(x.shape[0]))](x, base, status)


# With the GPU's own id_mask, embedding_table_grad (the path's table gradient) and ids_from_values: no CPU twin.
KERNELS = ("embedding_gather", "embedding_scatter_add", "scale_channels", "id_mask", "embedding_table_grad",
           "ids_from_values")
