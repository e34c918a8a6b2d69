"""NumPy's advanced indexing on GpuArrays (nnctl/engine/cuda/ndarray.py): integer arrays (several broadcast
together, integers among them), lists and boolean masks (their `nonzero`) mixed with slices, None and Ellipsis,
for reading (`x[key]`) and for `np.add.at(x, key, values)`, the gradient of such a read. The indices are read on
the host (a device array of them is copied there, a wait for the GPU): a mask's result shape depends on its values,
and every index is checked against its axis as NumPy checks it. The indexed axes are moved first and taken
together as one axis of rows, which take / add.at then gather and scatter-add in order."""

from __future__ import annotations

import math

import numpy as np

from nnctl.engine.cuda.ndarray import GpuArray, NotOnDevice


def _host(part):
    return part.copy_to_host() if isinstance(part, GpuArray) else np.asarray(part)


def split(array: GpuArray, key):
    """None for a basic key (integers, slices, None, Ellipsis); otherwise (the basic parts' view with the indexed
    axes moved first, how many they are, the flat row numbers into them (host int64, the indices' broadcast
    shape), the result axis where that shape goes)."""
    key = key if isinstance(key, tuple) else (key,)
    if not any(isinstance(k, (np.ndarray, list, GpuArray)) for k in key):
        return None
    parts = []  # the key with masks as their nonzero arrays, arrays on the host
    for k in key:
        if isinstance(k, (np.ndarray, list, GpuArray)):
            host = _host(k)
            if host.dtype == np.bool_:
                parts += list(np.nonzero(host))
            elif host.dtype.kind in "iu":
                parts.append(host)
            else:
                raise IndexError("arrays used as indices must be of integer (or boolean) type")
        elif isinstance(k, bool):
            raise NotOnDevice("a boolean scalar as an index of a GPU array is not supported")
        else:
            parts.append(k)
    used = sum(k is not None and k is not Ellipsis for k in parts)
    ellipsis = [i for i, k in enumerate(parts) if k is Ellipsis]
    if ellipsis:
        at = ellipsis[0]
        parts = parts[:at] + [slice(None)] * (array.ndim - used) + parts[at + 1:]
    else:
        parts += [slice(None)] * (array.ndim - used)
    # Every part now gives the view one axis (a slice, None, or an advanced part taken whole): part i is axis i.
    axes = [i for i, k in enumerate(parts) if isinstance(k, (np.ndarray, int, np.integer))]
    if not axes:
        raise NotOnDevice("a 0-d boolean array as an index of a GPU array is not supported")
    indices = np.broadcast_arrays(*(np.asarray(parts[i]) for i in axes))
    view = array._basic(tuple(slice(None) if i in axes else k for i, k in enumerate(parts)))
    sizes = [view.shape[a] for a in axes]
    for index, size in zip(indices, sizes):
        if index.size and (index.min() < -size or index.max() >= size):
            raise IndexError(f"index {int(index.max() if index.max() >= size else index.min())} is out of bounds "
                             f"for axis with size {size}")
    rows = np.ravel_multi_index(tuple(np.where(i < 0, i + s, i) for i, s in zip(indices, sizes)), sizes)
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    moved = view.transpose(axes + [a for a in range(view.ndim) if a not in axes])
    return moved, len(axes), rows.astype(np.int64), axes[0] if adjacent else 0


def _rows_view(moved: GpuArray, count: int) -> GpuArray:
    return moved.contiguous().reshape((math.prod(moved.shape[:count]),) + moved.shape[count:])


def _placed(shape_s, place):
    return list(range(len(shape_s))), list(range(place, place + len(shape_s)))


def getitem(array: GpuArray, key) -> GpuArray:
    from nnctl.engine.cuda.ndfuncs import take

    moved, count, rows, place = split(array, key)
    out = take(_rows_view(moved, count), rows, axis=0)
    return np.moveaxis(out, *_placed(rows.shape, place))


def add_at(target: GpuArray, key, values) -> None:
    """np.add.at(target, key, values) for an advanced key: repeated positions add up, in order."""
    from nnctl.engine.cuda.ndfuncs import add_rows, as_gpu, assign

    moved, count, rows, place = split(target, key)
    rest = moved.shape[count:]
    shape = rest[:place] + rows.shape + rest[place:]
    values = np.moveaxis(as_gpu(values).broadcast_to(shape), *reversed(_placed(rows.shape, place)))
    work = moved.contiguous()
    add_rows(_rows_view(work, count), rows, values)
    if work is not moved:
        assign(moved, work)
