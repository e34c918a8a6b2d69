"""The CUDA embedding-family kernels under Numba's CUDA simulator, against the NumPy oracles and the CPU
kernels' bookkeeping (run by tests/engine/test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the CUDA simulator tests run in their own process (tests/engine/test_cuda_sim.py)",
                allow_module_level=True)

from nnctl.engine import cpu, cuda, reference_embedding as reference  # noqa: E402

RNG = np.random.default_rng(10)


def _run(kernel, args, oracle=reference):
    mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
    got, expected = getattr(cuda, kernel)(*mine), getattr(oracle, kernel)(*theirs)
    assert got == expected, kernel
    for a, b in zip(mine, theirs):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=kernel)


def test_gather_scatter_and_channel_scaling():
    table = RNG.standard_normal((10, 3)).astype(np.float32)
    _run("embedding_gather", [np.array([4, 0, 9, 4], np.int32), table, np.zeros((4, 3), np.float32)])
    bad = np.array([4, 12, 9, -1], np.int32)  # an error: only the first bad position counts (the layer raises)
    assert cuda.embedding_gather(bad, table, np.zeros((4, 3), np.float32)) == 1
    ids, dy = np.array([3, 1, 3, 7, 1], np.int32), RNG.standard_normal((5, 3)).astype(np.float32)
    grad, touched, mark = np.ones((10, 3), np.float32), np.array([2, 5] + [0] * 8, np.int32), np.zeros(10, np.uint8)
    mark[[2, 5]] = 1  # the last step touched rows 2 and 5: cleared first
    _run("embedding_scatter_add", [ids, dy, grad, touched, 2, mark], oracle=cpu)
    x, scale = RNG.standard_normal((2, 5, 3)).astype(np.float32), RNG.random((2, 3)).astype(np.float32)
    _run("scale_channels", [x, scale, np.zeros_like(x)])
