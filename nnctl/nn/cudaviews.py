"""Device-array views made once: numba-cuda builds a new device array for each slice and reshape (Python work of
microseconds, ~4.5 µs a reshape measured on the build machine), and a step asks for the same views every step —
so the CUDA path's ops and heads (nn/cudaops*.py, nn/cudaheads.py, nn/cudapath.py) keep them."""

from __future__ import annotations

import math


def _size(shape) -> int:
    return int(math.prod(shape))


def first_as(cache: dict, buffer, shape):
    """The first elements of `buffer` (a 1-D device buffer that lives as long as `cache`'s owner) as an array of
    `shape`, made once: numba-cuda builds a new device array for each slice and reshape (Python work of
    microseconds), and a step asks for the same views every step. An entry keeps its buffer, so a reused id finds
    no stale view; the cache is cleared past 512 entries."""
    key = (id(buffer), shape)
    hit = cache.get(key)
    if hit is None or hit[0] is not buffer:
        if len(cache) >= 512:
            cache.clear()
        hit = cache[key] = (buffer, buffer[:_size(shape)].reshape(shape))
    return hit[1]


def reshaped(cache: dict, array, shape):
    """shaped(array, shape), made once per (array, shape) while `array` lives (in `cache`, which holds it): an op's
    input and output reshapes are of the same arrays every step (each op's views are made once per batch size),
    and each numba-cuda reshape builds a new device array (Python work of microseconds; a convnet step did 37)."""
    shape = tuple(shape)
    key = (id(array), shape)
    hit = cache.get(key)
    if hit is None or hit[0] is not array:
        if len(cache) >= 512:
            cache.clear()
        made = array[:shape[1]] if shape[:1] == ("rows",) else shaped(array, shape)  # ("rows", m): array[:m]
        hit = cache[key] = (array, made)
    return hit[1]


def shaped(array, *shape):
    """array.reshape(shape), or the array itself when it has that shape already: numba-cuda's reshape builds a new
    device array (Python work of microseconds) even then, and a step reshapes many arrays to the shape they have."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return array if tuple(array.shape) == shape else array.reshape(shape)
