"""The CUDA normalization kernels under Numba's CUDA simulator, against the NumPy oracles, on the CPU tests'
cases (2-D to 4-D inputs, the last axis and another; float32; run by tests/engine/test_cuda_sim.py)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import cuda
from nnctl.engine import reference_normalization as reference
from tests.engine.test_normalization_kernels import CASES, SHAPES, SPLIT, _run


# and a tall one: 1,300 rows (a convolution's pixels × batch) take columns.py's chunks and lanes
TWIN_SHAPES = [*SHAPES[:3], ((13, 20, 5, 3), -1)]


@pytest.mark.parametrize("shape, axis", TWIN_SHAPES, ids=[f"{len(s)}d-axis{a}" for s, a in TWIN_SHAPES])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_normalization_kernel_matches_its_oracle(name, shape, axis):
    args = CASES[name](np.random.default_rng(5), shape, axis, np.float32)
    for got, want in zip(_run(cuda, name, args), _run(reference, name, args)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)
    if name in SPLIT:  # the split form computes the same
        split = [*_run(cuda, f"{name}_split", (*args, 2))]
        for got, want in zip(split, _run(cuda, name, args)):
            np.testing.assert_array_equal(got, want)
