"""The CUDA path's device-array views made once (nnctl/engine/views.py: kept on the viewed array), for its ops and
heads (nn/cudaops*.py, nn/cudaheads.py, nn/cudapath.py): numba-cuda builds a new device array for each slice and
reshape, and a step asks for the same views every step."""

from __future__ import annotations

import math

from nnctl.engine.views import view


def _size(shape) -> int:
    return int(math.prod(shape))


def first_as(buffer, shape):
    """The first elements of the 1-D `buffer` as an array of `shape`, made once."""
    shape = tuple(shape)
    return view(buffer, ("first", shape), lambda b: b[:_size(shape)].reshape(shape))


def reshaped(array, shape):
    """shaped(array, shape), made once per array and shape (an op's inputs and outputs are the same arrays every
    step: each op's views are made once per batch size)."""
    shape = tuple(shape)
    return view(array, ("shape", shape), lambda a: shaped(a, shape))


def first_rows(array, m: int):
    """array[:m], made once per array and m."""
    return view(array, ("rows", m), lambda a: a[:m])


def shaped(array, *shape):
    """array.reshape(shape), or the array itself when it has that shape already: numba-cuda's reshape builds a new
    device array (Python work of microseconds) even then, and a step reshapes many arrays to the shape they have."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return array if tuple(array.shape) == shape else array.reshape(shape)
