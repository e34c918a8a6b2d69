"""Views of an array made once and kept on the array itself: numba-cuda builds a new device array for each slice
and reshape (Python work of microseconds, ~4.5 µs a reshape measured on the build machine), and a GPU step asks
for the same views every step. Kept on the viewed array, a view lives exactly as long as it: no id can be reused
while the cache holds it, and nothing outlives what it views. No CUDA import here (the CPU commands load it)."""

from __future__ import annotations


def view(array, key, make):
    """make(array) — a view of `array` (a slice, a reshape) that `key` fully describes — made on the first call
    and returned again after; made each time for an array that keeps no attributes (a NumPy array)."""
    try:
        cache = vars(array).setdefault("_nnctl_views", {})  # (vars, not getattr: a device array may forward lookups)
    except TypeError:
        return make(array)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = make(array)
    return hit
