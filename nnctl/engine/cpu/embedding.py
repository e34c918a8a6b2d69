"""CPU kernels of the embedding layer family (Numba `@njit`, cached); `KERNELS` names the ones the backend exports.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_embedding.py.
"""

KERNELS = ()
