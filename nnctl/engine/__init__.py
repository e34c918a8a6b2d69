"""The kernel engine: a backend per device exposing the same kernels by name.

`get_backend("cpu")` imports Numba on first call, never at `import nnctl`.
"""
